"""Where a record run's time goes: one seed of a recipe as a whole process under Python's profiler (cProfile),
its time cut into the run's phases (imports, set-up, the training steps' forward, backward and optimizer,
validation, the finish), beside the same run's wall time without the profiler.

    python benchmarks/profile_run.py --recipe speed [--seed 0] [--note TEXT]

The profiler adds its own cost to every Python call (the phases' sum is the profiled process's time); the
steps' arithmetic, in torch's kernels, is measured as it is. Run it on an idle machine, held to AVX2 like
``time_to_accuracy.py`` to profile the AVX2 record. The phases, with the machine and the date, go to
``benchmarks/results/profile-RECIPE-avx2.json`` (or ``-native.json``), from which ``docs/gen_speed.py`` makes the
table of docs/records.md.
"""

from __future__ import annotations

import argparse
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_file import RESULTS_DIR, held_to_avx2, machine, write_results  # noqa: E402
from time_to_accuracy import RUN_TIMEOUT_S  # noqa: E402

from fmnist_ignite import RECIPES  # noqa: E402

# The functions whose cumulative time is a phase (a file's path ending, the function's name).
TRAIN = ("fmnist_ignite/run/training.py", "_train")
STEP = ("fmnist_ignite/core/engines.py", "update")
BACKWARD = ("torch/_tensor.py", "backward")
# The optimizer's step: through a schedule's wrapper of it where the run has a schedule, else its own.
OPTIMIZER = [("torch/optim/lr_scheduler.py", "wrapper"), ("torch/optim/optimizer.py", "wrapper")]
SET_UP = ("fmnist_ignite/run/training.py", "__init__")
MAIN = ("fmnist_ignite/__main__.py", "<module>")  # the program: its imports and its main()
FINISH = [
    ("fmnist_ignite/run/training.py", name)
    for name in ("_restore_best", "_calibrate", "_score_test", "_plot", "_finish_tracking", "_finish")
]


def cumulative(stats: pstats.Stats, where: tuple[str, str]) -> float:
    """The cumulative seconds of the function ``where`` names (summed over its definitions that match)."""
    ending, name = where
    table = stats.stats
    return sum(row[3] for (path, _, function), row in table.items() if path.endswith(ending) and function == name)


def called_from(stats: pstats.Stats, caller: tuple[str, str], callee: tuple[str, str]) -> float:
    """The cumulative seconds ``callee`` took when ``caller`` called it directly."""
    table = stats.stats
    total = 0.0
    for (path, _, function), row in table.items():
        if not (path.endswith(callee[0]) and function == callee[1]):
            continue
        for (caller_path, _, caller_function), timing in row[4].items():
            if caller_path.endswith(caller[0]) and caller_function == caller[1]:
                total += timing[3]
    return total


def imports(stats: pstats.Stats) -> float:
    """The seconds of the library's imports: those the program and the library's functions started (the
    modules they import, theirs included; a module imported lazily by torch itself counts in its phase)."""
    table = stats.stats
    total = 0.0
    for (path, _, function), row in table.items():
        if function != "_find_and_load" or "importlib" not in path:
            continue
        for (caller_path, _, caller), timing in row[4].items():
            ours = "/fmnist_ignite/" in caller_path
            if (ours and caller != "<module>") or caller_path.endswith("fmnist_ignite/__main__.py"):
                total += timing[3]
    return total


def phases(stats: pstats.Stats) -> list[dict[str, object]]:
    """The run's phases in seconds, from the profile of one ``fmnist-ignite train`` process."""
    whole = cumulative(stats, MAIN)
    steps = cumulative(stats, STEP)
    backward = called_from(stats, STEP, BACKWARD)
    optimizer = sum(called_from(stats, STEP, step) for step in OPTIMIZER)  # whichever the step calls
    finish = sum(cumulative(stats, where) for where in FINISH)
    imported = imports(stats)
    rows = [
        ("imports (torch, Ignite, the library)", imported),
        ("set-up: data, model, engines, precision, run directory", cumulative(stats, SET_UP)),
        ("training steps: forward and loss", steps - backward - optimizer),
        ("training steps: backward", backward),
        ("training steps: optimizer", optimizer),
        ("validation, checkpoints and the epochs' handlers", cumulative(stats, TRAIN) - steps),
        ("the finish: best weights, calibration, test, summary", finish),
    ]
    rows.append(("the rest (argument parsing, launch, exit)", whole - sum(seconds for _, seconds in rows)))
    return [{"phase": phase, "seconds": round(seconds, 2)} for phase, seconds in rows]


def run(recipe: str, seed: int, data_dir: str, profile: Path | None, extra: tuple[str, ...] = ()) -> float:
    """One seed of ``recipe`` as a whole process (under cProfile, writing ``profile``, if given), with the flags
    ``extra`` after the others: its wall time."""
    with tempfile.TemporaryDirectory() as parent:
        profiler = ["-m", "cProfile", "-o", str(profile)] if profile else []
        command = [sys.executable, *profiler, "-m", "fmnist_ignite", "train", "--recipe", recipe]
        command += ["--seed", str(seed), "--no-plots", "--display", "plain", "--data-dir", data_dir]
        command += ["--output-dir", str(Path(parent) / "run"), *extra]
        started = time.perf_counter()
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise SystemExit(
                f"{recipe} seed {seed}: no end after {RUN_TIMEOUT_S} s; is another process busy?"
            ) from None
        wall = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"{recipe} seed {seed} failed: {(done.stderr or done.stdout).strip().splitlines()[-1:]}")
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="speed", choices=list(RECIPES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="where the results file goes")
    parser.add_argument("--note", default="", help="a note kept with the results (e.g. that the machine was shared)")
    args = parser.parse_args()
    plain = run(args.recipe, args.seed, args.data_dir, None)
    with tempfile.TemporaryDirectory() as directory:
        profile = Path(directory) / "run.prof"
        profiled = run(args.recipe, args.seed, args.data_dir, profile)
        rows = phases(pstats.Stats(str(profile)))
    described = machine()
    result = {
        "benchmark": "profile",
        "recipe": args.recipe,
        "seed": args.seed,
        "command": " ".join(
            [f"{key}={value}" for key, value in described["environment"].items()]
            + ["python benchmarks/profile_run.py", "--recipe", args.recipe, "--seed", str(args.seed)]
        ),
        "note": args.note,
        "machine": described,
        "wall_s": round(plain, 2),
        "profiled_wall_s": round(profiled, 2),
        "phases": rows,
    }
    name = f"profile-{args.recipe}-{'avx2' if held_to_avx2() else 'native'}.json"
    print(f"wrote {write_results(name, result, args.results_dir)}")
    for row in rows:
        print(f"{row['seconds']:7.2f} s  {row['phase']}")
    print(f"{plain:7.2f} s  the whole process without the profiler ({profiled:.2f} s with it)")


if __name__ == "__main__":
    main()
