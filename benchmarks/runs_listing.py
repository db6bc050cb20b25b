"""How long `fmnist-ignite runs` takes over many run directories: the whole process, as a user waits for it.

Writes ``--runs`` synthetic run directories in a temporary directory, as runs leave them (a ``summary.json``
of the real shape with a 10-epoch history, ``config.json``, a checkpoint's name): most finished, a tenth of
them interrupted, some failed, a few damaged, half of them as a study's ``trial-NNNN`` and a ``--seeds``
parent's ``seed-N``, with differing learning rates and seeds. Then times ``fmnist-ignite runs DIR`` (a
subprocess, the median of ``--repeats``; the target is under 2 s for 1,000 runs) and the listing alone in
this process, prints both with the machine and writes them to ``benchmarks/results/runs_listing.json``.

    python benchmarks/runs_listing.py [--runs 1000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fmnist_ignite import Config, list_runs
from fmnist_ignite.data.fashion_mnist import CLASS_NAMES
from fmnist_ignite.files.summary import RunStatus, RunSummary, write_summary

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "runs_listing.json"
TARGET_S = 2.0


def cpu_model() -> str:
    """The CPU's model name, as /proc/cpuinfo says it (else what platform knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def synthetic_run(directory: Path, n: int) -> None:
    """A run directory as run ``n`` of a sweep leaves it."""
    directory.mkdir(parents=True)
    config = dataclasses.asdict(Config(output_dir=str(directory), lr=10 ** -(2 + n % 3), seed=n % 5, epochs=10))
    (directory / "config.json").write_text(json.dumps(config))
    kind = n % 20
    status = RunStatus.INTERRUPTED if kind in (1, 2) else RunStatus.FAILED if kind == 3 else RunStatus.COMPLETED
    done = 10 if status is RunStatus.COMPLETED else 4
    history = [
        {"epoch": e, "train_loss": 1 / e, "val_loss": 1.1 / e, "val_accuracy": 0.8 + e / 100,
         "val_accuracy_ci_low": 0.79 + e / 100, "val_accuracy_ci_high": 0.81 + e / 100, "lr": 1e-3,
         "epoch_time_s": 2.5}
        for e in range(1, done + 1)
    ]  # fmt: skip
    test = {
        "accuracy": 0.88, "loss": 0.33, "count": 10_000, "accuracy_ci95": [0.874, 0.886],
        "calibration": {"ece": 0.02, "brier": 0.17, "ece_calibrated": 0.01, "brier_calibrated": 0.16},
        "predictions": "test_predictions.npz", "test_set_sha256": "0" * 64,
        "per_class_accuracy": dict.fromkeys(CLASS_NAMES, 0.88),
        "per_class_ci95": dict.fromkeys(CLASS_NAMES, [0.86, 0.9]),
    }  # fmt: skip
    summary = RunSummary(
        status=status,
        failure="disk full" if status is RunStatus.FAILED else None,
        config=config,
        versions={"fmnist_ignite": "0.1.0", "torch": "2.14.1"},
        device="cpu",
        cpu="AVX2",
        epochs_done=done,
        best_epoch=done,
        best_validation={"loss": 0.3, "accuracy": 0.9, "accuracy_ci95": [0.89, 0.91]},
        wall_time_s=30.0 + n % 7,
        history=history,
        stopped_early=False if status is RunStatus.COMPLETED else None,
        test=test if status is RunStatus.COMPLETED else None,
    )
    write_summary(directory / "summary.json", summary)
    (directory / f"training_checkpoint_{done}.pt").write_bytes(b"")
    if kind == 4:
        (directory / "summary.json").write_text('{"status": "completed", "epochs_done": "ten"}')  # damaged


def make_runs(root: Path, count: int) -> None:
    for n in range(count):
        if n % 4 == 0:
            synthetic_run(root / "study" / f"trial-{n:04d}", n)
        elif n % 4 == 1:
            synthetic_run(root / f"sweep-{n // 40}-seeds" / f"seed-{n}", n)
        else:
            synthetic_run(root / f"2026120{n % 9}-{n:06d}", n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    command = [sys.executable, "-m", "fmnist_ignite", "runs"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "runs"
        make_runs(root, args.runs)
        process, in_process = [], []
        for _ in range(args.repeats):
            started = time.perf_counter()
            done = subprocess.run([*command, str(root)], capture_output=True, text=True, check=True)
            process.append(time.perf_counter() - started)
            started = time.perf_counter()
            table = list_runs(root)
            in_process.append(time.perf_counter() - started)
        listed = len(done.stdout.splitlines()) - 2  # the title and the headings
        statuses = {status: sum(row.status == status for row in table) for status in sorted({r.status for r in table})}
    result = {
        "what": f"fmnist-ignite runs over {args.runs} synthetic run directories: whole process, and list_runs alone",
        "runs": args.runs,
        "rows_listed": listed,
        "statuses": statuses,
        "process_s_median": round(statistics.median(process), 3),
        "process_s": [round(s, 3) for s in process],
        "list_runs_s_median": round(statistics.median(in_process), 3),
        "target_s": TARGET_S,
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d"),
    }
    print(
        f"fmnist-ignite runs, {args.runs} runs: {result['process_s_median']:.2f} s whole process (median of "
        f"{args.repeats}; target under {TARGET_S:g} s), list_runs alone {result['list_runs_s_median']:.2f} s; "
        f"{listed} rows {statuses}"
    )
    print(f"machine: {result['cpu']}, {result['cores']} cores, Python {result['python']}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"Written: {out}")


if __name__ == "__main__":
    main()
