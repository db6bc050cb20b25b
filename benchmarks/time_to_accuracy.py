"""Time to accuracy over seeds: each seed of each recipe a whole process, its wall time (imports, data,
validation, test and checkpoints included), its validation and test accuracy, and how far it is from the
arithmetic limit: the wall time in peak-epochs (the time one epoch's FLOPs take at this machine's measured fp32
matmul peak), and the epoch's achieved GFLOP/s.

    python benchmarks/time_to_accuracy.py --recipes speed,cnn --seeds 0,1,2 [--target 0.9] [--note TEXT]

Each run is ``fmnist-ignite train --recipe R --seed S --no-plots`` in a fresh process with this process's
environment: to hold the CPU to AVX2, start this script with ``ATEN_CPU_CAPABILITY=avx2
ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2``. Runs one at a time; run it on an idle machine.
The FLOPs of a training step (forward, backward and the optimizer's own matrix products, Muon's
Newton-Schulz iterations among them) are counted by ``torch.utils.flop_counter.FlopCounterMode``; the peak is
measured with each thread count the runs took (a run beside other work takes fewer: ``CPU:``, its first line).

Each recipe's figures, with the machine and the date, go to
``benchmarks/results/time_to_accuracy-RECIPE-avx2.json`` (held to AVX2) or ``-native.json`` (not held), from
which ``docs/gen_speed.py`` makes the tables of docs/speed.md.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_file import RESULTS_DIR, held_to_avx2, machine, write_results  # noqa: E402
from throughput import matmul_peak_gflops  # noqa: E402

from fmnist_ignite import RECIPES, recipe  # noqa: E402
from fmnist_ignite.core.models import build_model  # noqa: E402
from fmnist_ignite.core.optim import make_optimizer  # noqa: E402

RUN_TIMEOUT_S = 3600  # a seed of any recipe takes minutes: an hour means it hangs


def step_gflop(name: str, **settings: object) -> float:
    """The GFLOP of one training step of recipe ``name`` (with ``settings`` over it) at its batch size:
    forward, backward, optimizer."""
    config = recipe(name, **{**settings, "precision": "fp32"})
    model = build_model(config.model, config.dropout)
    optimizer = make_optimizer(config, model)
    images, labels = torch.rand(config.batch_size, 1, 28, 28), torch.randint(0, 10, (config.batch_size,))
    loss_function = torch.nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    for _ in range(2):  # the second step, with the optimizer's state made
        with FlopCounterMode(display=False) as counter:
            optimizer.zero_grad()
            loss_function(model(images), labels).backward()
            optimizer.step()
    return counter.get_total_flops() / 1e9


def run_seed(
    name: str, seed: int, data_dir: str, target: float | None, extra: list[str], settings: Path | None = None
) -> dict:
    """One seed of recipe ``name`` as a whole process: its wall time and what its summary.json says.
    ``settings``: a settings file (``--config``) that names the recipe and changes some of its settings."""
    with tempfile.TemporaryDirectory() as parent:
        out = Path(parent) / f"{name}-seed-{seed}"
        chosen = ["--config", str(settings)] if settings else ["--recipe", name]
        command = [sys.executable, "-m", "fmnist_ignite", "train", *chosen, "--seed", str(seed)]
        command += ["--no-plots", "--display", "plain", "--data-dir", data_dir, "--output-dir", str(out), *extra]
        if target is not None:
            command += ["--target-accuracy", str(target)]
        started = time.perf_counter()
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise SystemExit(f"{name} seed {seed}: no end after {RUN_TIMEOUT_S} s; is another process busy?") from None
        wall = time.perf_counter() - started
        if done.returncode:
            raise SystemExit(f"{name} seed {seed} failed: {(done.stderr or done.stdout).strip().splitlines()[-1:]}")
        summary = json.loads((out / "summary.json").read_text())
    history = summary["history"]
    return {
        "recipe": name,
        "seed": seed,
        "wall_s": round(wall, 2),
        "epochs": summary["epochs_done"],
        "val_accuracy": history[-1]["val_accuracy"] if history else math.nan,
        "test_accuracy": summary["test"]["accuracy"],
        "epoch_time_s": statistics.median(row["epoch_time_s"] for row in history),
        "threads": summary["threads"],
        "target": summary.get("target"),
        "precision": summary["precision"],
    }


def table(results: list[dict]) -> str:
    """A markdown table of the results files' figures, for the console (docs/gen_speed.py makes the docs')."""
    lines = [
        "| recipe | precision | epochs | wall time per seed (s) | in peak-epochs | test acc. per seed (%) "
        "| mean test acc. (%) | epoch (s) | GFLOP an epoch | achieved GFLOP/s | of peak |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for result in results:
        seeds, epoch_gflop = result["seeds"], result["epoch_gflop"]
        peak = statistics.median(row["peak_gflops"] for row in seeds)
        accuracies = [100 * row["test_accuracy"] for row in seeds]
        epoch_s = statistics.median(row["epoch_time_s"] for row in seeds)
        spread = f" ± {statistics.stdev(accuracies):.2f}" if len(accuracies) > 1 else ""
        walls = ", ".join(f"{row['wall_s']:.1f}" for row in seeds)
        peak_epochs = ", ".join(f"{row['peak_epochs']:.1f}" for row in seeds)
        tests = ", ".join(f"{accuracy:.2f}" for accuracy in accuracies)
        lines.append(
            f"| `{result['recipe']}` | {seeds[0]['precision'].get('used', '?')} | {seeds[0]['epochs']} "
            f"| {walls} | {peak_epochs} | {tests} "
            f"| {statistics.mean(accuracies):.2f}{spread} | {epoch_s:.2f} | {epoch_gflop:.0f} "
            f"| {epoch_gflop / epoch_s:.0f} | {epoch_gflop / epoch_s / peak:.0%} |"
        )
    return "\n".join(lines)


def peaks_by_threads(counts: set[int]) -> dict[int, float]:
    """The fp32 matmul peak (GFLOP/s) with each thread count the runs computed with."""
    default = torch.get_num_threads()
    peaks = {}
    for threads in sorted(counts):
        torch.set_num_threads(threads)
        peaks[threads] = round(matmul_peak_gflops(), 1)
    torch.set_num_threads(default)
    return peaks


def results_name(recipe_name: str, extra: list[str]) -> str:
    """The results file of a recipe: ``time_to_accuracy-RECIPE-avx2.json`` held to AVX2, ``-native`` not held;
    a ``--precision`` among the runs' flags is added (``-native-fp32``)."""
    name = f"time_to_accuracy-{recipe_name}-{'avx2' if held_to_avx2() else 'native'}"
    if "--precision" in extra[:-1]:
        name += f"-{extra[extra.index('--precision') + 1]}"
    return f"{name}.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", default="speed", help="comma-separated recipe names")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    parser.add_argument("--target", type=float, help="also stop each run at this validation accuracy")
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="where the results files go")
    parser.add_argument("--note", default="", help="a note kept with the results (e.g. that the machine was shared)")
    parser.add_argument("extra", nargs="*", help="more flags for every run (after --)")
    args = parser.parse_args()
    names = args.recipes.split(",")
    for name in names:
        if name not in RECIPES:
            raise SystemExit(f"unknown recipe {name!r}: choose among {', '.join(RECIPES)}")
    seeds = [int(seed) for seed in args.seeds.split(",")]
    rows = [run_seed(name, seed, args.data_dir, args.target, args.extra) for name in names for seed in seeds]
    described = machine()
    peak = described["fp32_matmul_peak_gflops"]
    peaks = peaks_by_threads({row["threads"] for row in rows})  # a run on a busy machine may take fewer threads
    results = []
    for name in names:
        epoch_gflop = step_gflop(name) * math.ceil(55_000 / recipe(name).batch_size)
        mine = [row for row in rows if row["recipe"] == name]
        for row in mine:
            row["peak_gflops"] = peaks[row["threads"]]
            row["peak_epochs"] = round(row["wall_s"] / (epoch_gflop / row["peak_gflops"]), 2)
        result = {
            "benchmark": "time_to_accuracy",
            "recipe": name,
            "command": " ".join(
                [f"{key}={value}" for key, value in described["environment"].items()]
                + ["python benchmarks/time_to_accuracy.py", "--recipes", name, "--seeds", args.seeds]
                + (["--target", str(args.target)] if args.target is not None else [])
                + (["--", *args.extra] if args.extra else [])
            ),
            "note": args.note,
            "machine": described,
            "epoch_gflop": round(epoch_gflop, 1),
            "seeds": [{key: value for key, value in row.items() if key != "recipe"} for row in mine],
        }
        results.append(result)
        path = write_results(results_name(name, args.extra), result, args.results_dir)
        print(f"wrote {path}")
    held = " (held to AVX2)" if described["held_to_avx2"] else ""
    print(
        f"{described['cpu']}, CPU capability {described['capability']}{held}, {described['cores']} cores, "
        f"torch {described['torch']}, fp32 matmul peak {peak:.0f} GFLOP/s\n\n{table(results)}"
    )
    for row in rows:
        if row["target"]:
            block = row["target"]
            when = (
                f"epoch {block['epoch']}, {block['training_s']:.1f} s of training"
                if block["reached"]
                else "not reached"
            )
            print(f"{row['recipe']} seed {row['seed']}: target {block['accuracy']:.0%} validation: {when}")


if __name__ == "__main__":
    main()
