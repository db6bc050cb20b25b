"""`make run`'s default run side by side with the floor: wall time, peak memory and start-up.

Runs, alternately and one at a time, each as its own process as a user would start it:
  ours:   examples/run.py (the tutorial recipe, 5 epochs, plots and reports included);
  plain:  benchmarks/plain_program.py, the same work written by hand (the floor);
  ignite: benchmarks/ignite_example.py, Ignite's MNIST-example pattern (with --ignite-example);
  lightning: benchmarks/lightning_program.py, the same work the way Lightning's docs teach it (with
          --lightning; needs `pip install -e '.[bench]'`).
and start-up: `python -c "import torch"` against `examples/run.py --help` and a rejected flag.
Prints medians, ratios and the machine (CPU capability, cores, torch, measured matmul peak), and writes them
to ``benchmarks/results/default_run-native.json`` (``-avx2.json`` held to AVX2), from which
``docs/gen_speed.py`` makes the table of docs/speed.md.

    python benchmarks/default_run.py [--repeats 2] [--epochs 5] [--precisions auto,fp32,bf16] [--no-plain]
        [--ignite-example] [--lightning] [--note TEXT]

Ours runs once a repeat in each of ``--precisions`` (default auto; what auto chose is kept); the plain and
Lightning programs run fp32.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results_file import RESULTS_DIR, machine, write_results

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
    parser.add_argument("--no-plain", action="store_true", help="leave out the plain program")
    parser.add_argument(
        "--precisions", default="auto", help="ours' --precision, comma-separated: each one run (auto, fp32, bf16)"
    )
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="where default_run-*.json goes")
    parser.add_argument("--note", default="", help="a note kept with the results (e.g. that the machine was shared)")
    args = parser.parse_args()
    precisions = args.precisions.split(",")
    if not set(precisions) <= {"auto", "fp32", "bf16"}:
        raise SystemExit(f"--precisions {args.precisions}: choose among auto, fp32, bf16")
    python, run_py = sys.executable, str(ROOT / "examples" / "run.py")
    described = machine()
    print(describe(described))

    starts: dict[str, list[float]] = {"import torch": [], "run.py --help": [], "run.py --lr -1": []}
    for _ in range(5):
        starts["import torch"].append(timed([python, "-c", "import torch"])[0])
        starts["run.py --help"].append(timed([python, run_py, "--help"])[0])
        starts["run.py --lr -1"].append(timed([python, run_py, "--lr", "-1"])[0])
    torch_s = statistics.median(starts["import torch"])
    for name, runs in starts.items():
        ratio = statistics.median(runs) / torch_s
        print(f"start-up, {name:<16} {statistics.median(runs):6.2f} s  = {ratio:5.1%} of import torch")

    chosen: list[dict] = []  # what --precision auto chose, each run
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        raw = torchvision_layout(tmp / "data")
        epochs = ["--epochs", str(args.epochs)]
        programs = {
            f"ours --precision {precision}": (
                lambda i, precision=precision: [
                    python,
                    run_py,
                    *epochs,
                    "--precision",
                    precision,
                    "--output-dir",
                    str(tmp / f"ours-{precision}-{i}"),
                ]
            )
            for precision in precisions
        }
        if not args.no_plain:
            programs["plain"] = lambda i: [
                python,
                str(ROOT / "benchmarks" / "plain_program.py"),
                str(raw),
                str(tmp / f"plain{i}"),
                *epochs,
            ]
        if args.ignite_example:
            programs["ignite example pattern"] = lambda i: [
                python,
                str(ROOT / "benchmarks" / "ignite_example.py"),
                str(tmp / "data"),
                *epochs,
            ]
        if args.lightning:
            programs["lightning"] = lambda i: [
                python,
                str(ROOT / "benchmarks" / "lightning_program.py"),
                str(raw),
                str(tmp / f"lightning{i}"),
                *epochs,
            ]
        runs: dict[str, list[tuple[float, float]]] = {name: [] for name in programs}
        for i in range(args.repeats):  # alternately, so drifts of a shared machine hit each alike
            for name, command in programs.items():
                runs[name].append(timed(command(i)))
            if "auto" in precisions:
                summary = json.loads((tmp / f"ours-auto-{i}" / "summary.json").read_text())
                chosen.append({key: summary["precision"].get(key) for key in ("used", "why", "step_ms", "cached")})
        print(f"{args.epochs} epochs, whole process, medians of {args.repeats}:")
        results = {name: median_row(name, r) for name, r in runs.items()}
    for choice in chosen:
        print(f"--precision auto chose {choice['used']} ({choice['why']})")
    base = f"ours --precision {precisions[0]}"
    for name, (seconds, memory) in results.items():
        if name != base:
            ratio = f"wall time {seconds / results[base][0]:.2f}x, peak memory {memory / results[base][1]:.2f}x"
            print(f"{name} / {base}: {ratio}")
    path = write_results(
        f"default_run-{'avx2' if described['held_to_avx2'] else 'native'}.json",
        {
            "benchmark": "default_run",
            "command": " ".join(
                [f"{key}={value}" for key, value in described["environment"].items()]
                + ["python benchmarks/default_run.py", "--repeats", str(args.repeats), "--precisions", args.precisions]
                + (["--epochs", str(args.epochs)] if args.epochs != 5 else [])
                + (["--no-plain"] if args.no_plain else [])
                + (["--ignite-example"] if args.ignite_example else [])
                + (["--lightning"] if args.lightning else [])
            ),
            "note": args.note,
            "machine": described,
            "epochs": args.epochs,
            "repeats": args.repeats,
            "programs": {
                name: {
                    "wall_s": [round(seconds, 2) for seconds, _ in runs[name]],
                    "peak_rss_mb": [round(memory) for _, memory in runs[name]],
                    "median_wall_s": round(results[name][0], 2),
                    "median_peak_rss_mb": round(results[name][1]),
                }
                for name in programs
            },
            "auto_chose": chosen,
            "startup_s": {name: round(statistics.median(times), 3) for name, times in starts.items()},
        },
        args.results_dir,
    )
    print(f"wrote {path}")


def describe(described: dict) -> str:
    """The line every figure is printed with."""
    held = " (held to AVX2)" if described["held_to_avx2"] else ""
    return (
        f"machine: {described['cpu']}, CPU capability {described['capability']}{held}, {described['cores']} cores, "
        f"torch {described['torch']} with {described['threads']} threads, "
        f"measured fp32 matmul peak {described['fp32_matmul_peak_gflops']:.0f} GFLOP/s"
    )


if __name__ == "__main__":
    main()
