"""What each of a record's tricks buys: the record's recipe, then each variant (one trick taken out or changed),
each seed a whole process as in ``time_to_accuracy.py``, and the difference of each variant's mean test
accuracy and wall time from the record's, with whether it exceeds the seeds' noise.

    python benchmarks/ablation.py --recipe speed --seeds 0,1,2 [--variants NAME,...] [--note TEXT]

A variant is a set of settings over the recipe (``VARIANTS``), given to each run as a settings file
(``--config``), so a switch the recipe turns on (``hflip``) can be turned off. Runs one at a time; run it on an
idle machine, held to AVX2 like ``time_to_accuracy.py`` (``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2
MKL_ENABLE_INSTRUCTIONS=AVX2``). The figures, with the machine and the date, go to
``benchmarks/results/ablation-RECIPE-avx2.json`` (or ``-native.json``), from which ``docs/gen_speed.py`` makes
the ablation tables of docs/records.md.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_file import RESULTS_DIR, held_to_avx2, machine, write_results  # noqa: E402
from time_to_accuracy import run_seed, step_gflop  # noqa: E402

from fmnist_ignite import recipe  # noqa: E402

# Each recipe's variants: a name, what it changes in words, and the settings over the recipe.
VARIANTS: dict[str, list[tuple[str, str, dict]]] = {
    "speed": [
        ("record", "the recipe as it is", {}),
        ("adamw", "AdamW (lr 3e-3) in Muon's place", {"optimizer": "adamw", "lr": 3e-3}),
        ("ns-5", "5 Newton-Schulz iterations (torch's default), not 3", {"ns_steps": 5}),
        ("ns-2", "2 Newton-Schulz iterations", {"ns_steps": 2}),
        ("no-smoothing", "no label smoothing (0.15)", {"label_smoothing": 0.0}),
        ("no-dropout", "no dropout (0.115)", {"dropout": 0.0}),
        ("constant-lr", "a constant learning rate, not one-cycle", {"scheduler": "constant"}),
        ("7-epochs", "7 epochs, not 9", {"epochs": 7}),
        ("batch-8192", "batch 8192 at lr 3.5e-2, not 4096 at 2.5e-2", {"batch_size": 8192, "lr": 3.5e-2}),
    ],
    "cnn": [
        ("record", "the recipe as it is", {}),
        ("no-tta", "no test-time flips", {"tta": False}),
        ("no-hflip", "no training flips (nor test-time flips)", {"hflip": False, "tta": False}),
        ("20-epochs", "20 epochs, not 30", {"epochs": 20}),
        ("shift-2", "plus random shifts of up to 2 pixels", {"shift": 2}),
    ],
}


def run_variant(recipe: str, settings: dict, seed: int, data_dir: str) -> dict:
    """One seed of ``recipe`` with ``settings`` over it, as a whole process."""
    with tempfile.TemporaryDirectory() as directory:
        config = Path(directory) / "variant.json"
        config.write_text(json.dumps({"recipe": recipe, **settings}))
        row = run_seed(recipe, seed, data_dir, None, [], settings=config)
    return {key: value for key, value in row.items() if key not in ("recipe", "target")}


def training_tflop(name: str, settings: dict) -> float:
    """The arithmetic of a variant's training (every step's forward, backward and optimizer), in TFLOP: what
    its wall time would be proportional to on an idle machine, whatever the load while it ran."""
    config = recipe(name, **settings)
    steps = math.ceil((60_000 - config.val_size) / config.batch_size) * config.epochs
    return step_gflop(name, **settings) * steps / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="speed", choices=sorted(VARIANTS))
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    parser.add_argument("--variants", help="comma-separated variant names (default: all of the recipe's)")
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="where the results file goes")
    parser.add_argument("--note", default="", help="a note kept with the results (e.g. that the machine was shared)")
    args = parser.parse_args()
    known = {name: (words, settings) for name, words, settings in VARIANTS[args.recipe]}
    names = args.variants.split(",") if args.variants else list(known)
    unknown = [name for name in names if name not in known]
    if unknown:
        raise SystemExit(f"unknown variant {unknown[0]!r} of {args.recipe}: choose among {', '.join(known)}")
    seeds = [int(seed) for seed in args.seeds.split(",")]
    rows: dict[str, list[dict]] = {name: [] for name in names}
    for seed in seeds:  # seed by seed, the variants alternating: a change of the machine's load spreads over all
        for name in names:
            rows[name].append(run_variant(args.recipe, known[name][1], seed, args.data_dir))
            print(f"{name} seed {seed}: {rows[name][-1]['wall_s']:.1f} s, test {rows[name][-1]['test_accuracy']:.2%}")
    described = machine()
    result = {
        "benchmark": "ablation",
        "recipe": args.recipe,
        "command": " ".join(
            [f"{key}={value}" for key, value in described["environment"].items()]
            + ["python benchmarks/ablation.py", "--recipe", args.recipe, "--seeds", args.seeds]
            + (["--variants", args.variants] if args.variants else [])
        ),
        "note": args.note,
        "machine": described,
        "variants": [
            {
                "name": name,
                "change": known[name][0],
                "settings": known[name][1],
                "training_tflop": round(training_tflop(args.recipe, known[name][1]), 2),
                "seeds": rows[name],
            }
            for name in names
        ],
    }
    name = f"ablation-{args.recipe}-{'avx2' if held_to_avx2() else 'native'}.json"
    print(f"wrote {write_results(name, result, args.results_dir)}")


if __name__ == "__main__":
    main()
