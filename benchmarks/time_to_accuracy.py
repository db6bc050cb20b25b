"""Time to accuracy over seeds: each seed of each recipe a whole process, its wall time (imports, data,
validation, test and checkpoints included), its test accuracy, and how far the recipe's epoch is from
the arithmetic limit (achieved GFLOP/s against this machine's measured fp32 matmul peak).

    python benchmarks/time_to_accuracy.py --recipes speed,cnn --seeds 0,1,2 [--target 0.9] [--out FILE]

Each run is ``fmnist-ignite train --recipe R --seed S --no-plots`` in a fresh process with this process's
environment: to hold the CPU to AVX2, start this script with ``ATEN_CPU_CAPABILITY=avx2
ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2``. Runs one at a time; run it on an idle machine.
The FLOPs of a training step (forward, backward and the optimizer's own matrix products, Muon's
Newton-Schulz iterations among them) are counted by ``torch.utils.flop_counter.FlopCounterMode``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import matmul_peak_gflops  # noqa: E402

from fmnist_ignite import RECIPES, recipe  # noqa: E402
from fmnist_ignite.core.device import choose_precision, cpu_capability  # noqa: E402
from fmnist_ignite.core.models import build_model  # noqa: E402
from fmnist_ignite.core.optim import make_optimizer  # noqa: E402


def step_gflop(name: str) -> float:
    """The GFLOP of one training step of recipe ``name`` at its batch size: forward, backward, optimizer."""
    config = recipe(name, precision="fp32")
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


def run_seed(name: str, seed: int, data_dir: str, target: float | None, extra: list[str]) -> dict:
    """One seed of recipe ``name`` as a whole process: its wall time and what its summary.json says."""
    with tempfile.TemporaryDirectory() as parent:
        out = Path(parent) / f"{name}-seed-{seed}"
        command = [sys.executable, "-m", "fmnist_ignite", "train", "--recipe", name, "--seed", str(seed)]
        command += ["--no-plots", "--display", "plain", "--data-dir", data_dir, "--output-dir", str(out), *extra]
        if target is not None:
            command += ["--target-accuracy", str(target)]
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if done.returncode:
            raise SystemExit(f"{name} seed {seed} failed: {(done.stderr or done.stdout).strip().splitlines()[-1:]}")
        summary = json.loads((out / "summary.json").read_text())
    history = summary["history"]
    return {
        "recipe": name,
        "seed": seed,
        "wall_s": wall,
        "epochs": summary["epochs_done"],
        "val_accuracy": history[-1]["val_accuracy"] if history else math.nan,
        "test_accuracy": summary["test"]["accuracy"],
        "epoch_time_s": statistics.median(row["epoch_time_s"] for row in history),
        "target": summary.get("target"),
        "precision": summary["precision"],
    }


def table(rows: list[dict], peak: float, gflop: dict[str, float], batches: dict[str, int]) -> str:
    """The markdown table: per recipe, each seed's wall time, the mean test accuracy, the epoch's GFLOP/s."""
    lines = [
        "| recipe | precision | epochs | wall time per seed (s) | test acc. per seed (%) | mean test acc. (%) "
        "| epoch (s) | GFLOP an epoch | achieved GFLOP/s | of peak |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in dict.fromkeys(row["recipe"] for row in rows):
        mine = [row for row in rows if row["recipe"] == name]
        accuracies = [100 * row["test_accuracy"] for row in mine]
        epoch_s = statistics.median(row["epoch_time_s"] for row in mine)
        epoch_gflop = gflop[name] * batches[name]
        spread = f" ± {statistics.stdev(accuracies):.2f}" if len(accuracies) > 1 else ""
        walls = ", ".join(f"{row['wall_s']:.1f}" for row in mine)
        tests = ", ".join(f"{accuracy:.2f}" for accuracy in accuracies)
        lines.append(
            f"| `{name}` | {mine[0]['precision'].get('used', '?')} | {mine[0]['epochs']} "
            f"| {walls} | {tests} "
            f"| {statistics.mean(accuracies):.2f}{spread} | {epoch_s:.2f} | {epoch_gflop:.0f} "
            f"| {epoch_gflop / epoch_s:.0f} | {epoch_gflop / epoch_s / peak:.0%} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", default="speed", help="comma-separated recipe names")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    parser.add_argument("--target", type=float, help="also stop each run at this validation accuracy")
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--out", help="also write the table and the runs (JSON) here")
    parser.add_argument("extra", nargs="*", help="more flags for every run (after --)")
    args = parser.parse_args()
    names = args.recipes.split(",")
    for name in names:
        if name not in RECIPES:
            raise SystemExit(f"unknown recipe {name!r}: choose among {', '.join(RECIPES)}")
    seeds = [int(seed) for seed in args.seeds.split(",")]
    rows = [run_seed(name, seed, args.data_dir, args.target, args.extra) for name in names for seed in seeds]
    peak = matmul_peak_gflops()
    gflop = {name: step_gflop(name) for name in names}
    batches = {name: math.ceil(55_000 / recipe(name).batch_size) for name in names}
    precision, why = choose_precision("auto", "cpu")
    held = os.environ.get("ATEN_CPU_CAPABILITY")
    machine = (
        f"CPU {cpu_capability()}"
        + (f" (held to {held} by ATEN_CPU_CAPABILITY)" if held else "")
        + f", {os.cpu_count()} cores, {torch.get_num_threads()} threads, torch {torch.__version__}, "
        f"fp32 matmul peak {peak:.0f} GFLOP/s; --precision auto: {precision} ({why})"
    )
    text = f"{machine}\n\n{table(rows, peak, gflop, batches)}\n"
    for row in rows:
        if row["target"]:
            block = row["target"]
            when = (
                f"epoch {block['epoch']}, {block['training_s']:.1f} s of training"
                if block["reached"]
                else "not reached"
            )
            text += f"\n{row['recipe']} seed {row['seed']}: target {block['accuracy']:.0%} validation: {when}"
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n\n```json\n" + json.dumps(rows, indent=1) + "\n```\n")


if __name__ == "__main__":
    main()
