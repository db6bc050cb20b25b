"""`make run`'s default run side by side with the floor: wall time, peak memory and start-up.

Runs, alternately and one at a time, each as its own process as a user would start it:
  ours:   examples/run.py (the tutorial recipe, 5 epochs, plots and reports included);
  plain:  benchmarks/plain_program.py, the same work written by hand (the floor);
  ignite: benchmarks/ignite_example.py, Ignite's MNIST-example pattern (with --ignite-example);
  lightning: benchmarks/lightning_program.py, the same work the way Lightning's docs teach it (with
          --lightning; needs `pip install -e '.[bench]'`).
and start-up: `python -c "import torch"` against `examples/run.py --help` and a rejected flag.
Prints medians, ratios and the machine (CPU capability, cores, torch, measured matmul peak).

    python benchmarks/default_run.py [--repeats 2] [--epochs 5] [--precision fp32] [--ignite-example] [--lightning]

``--precision`` is passed to ours (default auto: bf16 on a CPU with native bf16); the plain and Lightning
programs run fp32.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from throughput import describe_machine

from fmnist_ignite.data.fashion_mnist import locate_fashion_mnist
from fmnist_ignite.data.idx import read_idx

ROOT = Path(__file__).resolve().parent.parent


def timed(command: list[str]) -> tuple[float, float]:
    """Wall seconds and peak resident memory (MB) of one process running ``command``."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) not in (0, 2):
        raise SystemExit(f"{command} failed: {proc.stderr.read().decode()}")
    return seconds, usage.ru_maxrss / 1024


def torchvision_layout(directory: Path) -> Path:
    """The data set, decompressed into ``directory/FashionMNIST/raw``, where torchvision reads it."""
    raw = directory / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for name, path in locate_fashion_mnist("data", download=False).items():
        if path.suffix == ".gz":
            read_idx(path)  # readable
            subprocess.run(f"gzip -dc '{path}' > '{raw / name}'", shell=True, check=True)
        else:
            shutil.copy(path, raw / name)
    return raw


def median_row(name: str, runs: list[tuple[float, float]]) -> tuple[float, float]:
    seconds, memory = statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)
    print(f"{name:<38} {seconds:7.1f} s  {memory:7.0f} MB   (runs: {', '.join(f'{s:.1f}' for s, _ in runs)})")
    return seconds, memory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--ignite-example", action="store_true", help="also run Ignite's MNIST-example pattern")
    parser.add_argument("--lightning", action="store_true", help="also run the Lightning program")
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"), help="ours' --precision")
    args = parser.parse_args()
    python, run_py = sys.executable, str(ROOT / "examples" / "run.py")
    print(describe_machine())

    starts = {"import torch": [], "run.py --help": [], "run.py --lr -1": []}
    for _ in range(5):
        starts["import torch"].append(timed([python, "-c", "import torch"])[0])
        starts["run.py --help"].append(timed([python, run_py, "--help"])[0])
        starts["run.py --lr -1"].append(timed([python, run_py, "--lr", "-1"])[0])
    torch_s = statistics.median(starts["import torch"])
    for name, runs in starts.items():
        ratio = statistics.median(runs) / torch_s
        print(f"start-up, {name:<16} {statistics.median(runs):6.2f} s  = {ratio:5.1%} of import torch")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        raw = torchvision_layout(tmp / "data")
        epochs = ["--epochs", str(args.epochs)]
        precision = ["--precision", args.precision]
        programs = {
            "ours (examples/run.py)": lambda i: [
                python,
                run_py,
                *epochs,
                *precision,
                "--output-dir",
                str(tmp / f"ours{i}"),
            ],
            "plain (benchmarks/plain_program.py)": lambda i: [
                python,
                str(ROOT / "benchmarks" / "plain_program.py"),
                str(raw),
                str(tmp / f"plain{i}"),
                *epochs,
            ],
        }
        if args.ignite_example:
            programs["ignite example pattern"] = lambda i: [
                python,
                str(ROOT / "benchmarks" / "ignite_example.py"),
                str(tmp / "data"),
                *epochs,
            ]
        if args.lightning:
            programs["lightning (benchmarks/lightning_program.py)"] = lambda i: [
                python,
                str(ROOT / "benchmarks" / "lightning_program.py"),
                str(raw),
                str(tmp / f"lightning{i}"),
                *epochs,
            ]
        runs = {name: [] for name in programs}
        for i in range(args.repeats):  # alternately, so drifts of a shared machine hit each alike
            for name, command in programs.items():
                runs[name].append(timed(command(i)))
        print(f"{args.epochs} epochs, whole process, medians of {args.repeats} (ours: --precision {args.precision}):")
        results = {name: median_row(name, r) for name, r in runs.items()}
    ours, plain = results["ours (examples/run.py)"], results["plain (benchmarks/plain_program.py)"]
    print(f"ours / plain: wall time {ours[0] / plain[0]:.2f}x, peak memory {ours[1] / plain[1]:.2f}x")
    if args.lightning:
        peer = results["lightning (benchmarks/lightning_program.py)"]
        print(f"lightning / ours: wall time {peer[0] / ours[0]:.2f}x, peak memory {peer[1] / ours[1]:.2f}x")
        print(f"ours / lightning: wall time {ours[0] / peer[0]:.2f}x")
    if args.ignite_example:
        example = results["ignite example pattern"]
        print(f"ignite example / ours: wall time {example[0] / ours[0]:.2f}x, peak memory {example[1] / ours[1]:.2f}x")


if __name__ == "__main__":
    main()
