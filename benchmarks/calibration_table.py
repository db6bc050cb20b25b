"""The table of docs/uncertainty.md: each recipe's test ECE (its own probabilities and at the temperature it
fitted on validation), Brier score and mean corruption accuracy, over seeds 0-2.

Each recipe is trained once per seed with ``--seeds 3`` (in RUNS/<recipe>, resumable: the same command
again keeps the finished seeds), then each seed's kept model is scored under the corruption suite. Prints a
Markdown table, the machine it ran on and the wall time of each part.

    python benchmarks/calibration_table.py [--recipes tutorial,speed,fast,best,cnn] [--runs runs/calibration]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from pathlib import Path

from throughput import describe_machine

from fmnist_ignite import evaluate_corruptions, recipe, train_seeds


def mean_sd(values: list[float]) -> str:
    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * mean:.2f} ± {100 * sd:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", default="tutorial,speed,fast,best,cnn")
    parser.add_argument("--runs", default="runs/calibration")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    logging.getLogger("fmnist_ignite").setLevel(logging.WARNING)  # a benchmark times the run: its lines unprinted
    rows = ["| recipe | test accuracy (%) | ECE (%) | ECE at T (%) | T | Brier | mean corruption accuracy (%) |",
            "|---|---|---|---|---|---|---|"]  # fmt: skip
    for name in args.recipes.split(","):
        started = time.perf_counter()
        parent = Path(args.runs) / name
        result = train_seeds(recipe(name, seeds=str(args.seeds), output_dir=str(parent), plots=False, progress=False))
        trained = time.perf_counter() - started
        accuracy, ece, ece_t, temperature, brier, corrupted = [], [], [], [], [], []
        for run in result.runs:
            summary = json.loads((Path(run["output_dir"]) / "summary.json").read_text())
            test = summary["test"]
            accuracy.append(test["accuracy"])
            ece.append(test["calibration"]["ece"])
            ece_t.append(test["calibration"]["ece_calibrated"])
            brier.append(test["calibration"]["brier"])
            temperature.append(summary["calibration"]["temperature"])
            best = summary["checkpoints"]["best"]
            corrupted.append(evaluate_corruptions(best, seed=0).mean_accuracy)
        scored = time.perf_counter() - started - trained
        t = f"{statistics.fmean(temperature):.2f}"
        rows.append(f"| `{name}` | {mean_sd(accuracy)} | {mean_sd(ece)} | {mean_sd(ece_t)} | {t} | "
                    f"{statistics.fmean(brier):.4f} | {mean_sd(corrupted)} |")  # fmt: skip
        print(f"{name}: trained in {trained:.0f} s, corruptions scored in {scored:.0f} s", flush=True)
    print("\n".join(rows))
    print(describe_machine())


if __name__ == "__main__":
    main()
