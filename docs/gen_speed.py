"""The measured tables of docs/speed.md, docs/records.md and of the README's speed block, generated from the results files the
benchmarks write (``benchmarks/results/*.json``), never copied by hand.

Each table sits in its page between two markers, ``<!-- generated: NAME ... -->`` and ``<!-- end: NAME -->``:

- ``make docs`` runs this (mkdocs-gen-files), so the site shows what the results files hold;
- ``python docs/gen_speed.py`` writes the tables into docs/speed.md and README.md (after a benchmark wrote a
  results file), ``--check`` only says which page is out of date;
- ``tests/test_speed_docs.py`` fails when a table in a page and its results files disagree.

A table shows the recipes that have a results file, and names those that have none yet.
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

from fmnist_ignite.config.recipes import RECIPES

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
PAGES = [
    ROOT / "docs" / "speed.md",
    ROOT / "docs" / "records.md",
    ROOT / "README.md",
]
BLOCK = re.compile(
    r"(<!-- generated: (?P<name>[\w-]+) .*?-->\n)(?P<body>.*?)(<!-- end: (?P=name) -->)",
    re.S,
)
HOLD = (
    "ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2"
)


def load_results(kind: str, directory: Path = RESULTS) -> list[dict]:
    """The results files of benchmark ``kind`` (``time_to_accuracy``, ``default_run``): held to AVX2 first,
    then by recipe in the order of ``RECIPES``."""
    found = []
    for path in sorted(directory.glob(f"{kind}-*.json")):
        try:
            result = json.loads(path.read_text())
            result["machine"]["cpu"]  # noqa: B018 - every results file says its machine
        except (ValueError, KeyError, TypeError) as exc:
            raise SystemExit(
                f"{path}: not a results file of {kind} ({exc!r})"
            ) from None
        result["file"] = path.name
        found.append(result)
    order = list(RECIPES)

    def key(result: dict) -> tuple:
        recipe = result.get("recipe", "")
        held = not result["machine"]["held_to_avx2"]
        return (
            order.index(recipe) if recipe in order else len(order),
            held,
            result["file"],
        )

    return sorted(found, key=key)


def kernels(machine: dict) -> str:
    """The kernels torch ran, in words: "held to AVX2", or the CPU's own capability."""
    if machine["held_to_avx2"]:
        return "held to AVX2"
    return machine["capability"]


def cpu_words(machine: dict) -> str:
    """The CPU in words: model, what it has, cores, torch, the measured peak."""
    return (
        f"{machine_words(machine)}, fp32 matmul peak "
        f"{machine['fp32_matmul_peak_gflops']:.0f} GFLOP/s"
    )


def listed(values: list[float], digits: int) -> str:
    return ", ".join(f"{value:.{digits}f}" for value in values)


def precision_words(rows: list[dict]) -> str:
    """The precision the runs used, and whether ``auto`` chose it."""
    used = sorted({row["precision"].get("used", "?") for row in rows})
    auto = all(row["precision"].get("why", "").startswith("auto") for row in rows)
    return " or ".join(used) + (" (auto)" if auto else "")


def noted(result: dict) -> str:
    return f"; {result['note']}" if result.get("note") else ""


def time_to_accuracy_table(directory: Path = RESULTS) -> str:
    """Per results file of ``benchmarks/time_to_accuracy.py``: each seed's wall time (also in peak-epochs),
    validation and test accuracy, the mean; then each file's machine, date and command."""
    results = load_results("time_to_accuracy", directory)
    lines = [
        "| recipe | kernels | precision | epochs | wall time per seed (s) "
        "| in peak-epochs | validation acc. per seed (%) | test acc. per seed (%) "
        "| mean test acc. |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    notes = []
    for result in results:
        rows, machine = result["seeds"], result["machine"]
        tests = [100 * row["test_accuracy"] for row in rows]
        spread = f" ± {statistics.stdev(tests):.2f}" if len(tests) > 1 else ""
        epochs = sorted({row["epochs"] for row in rows})
        lines.append(
            f"| `{result['recipe']}` | {kernels(machine)} | {precision_words(rows)} "
            f"| {', '.join(map(str, epochs))} "
            f"| {listed([row['wall_s'] for row in rows], 1)} "
            f"| {listed([row['peak_epochs'] for row in rows], 1)} "
            f"| {listed([100 * row['val_accuracy'] for row in rows], 2)} "
            f"| {listed(tests, 2)} | **{statistics.mean(tests):.2f}%{spread}** |"
        )
        epoch_s = result["epoch_gflop"] / machine["fp32_matmul_peak_gflops"]
        threads = sorted({row["threads"] for row in rows})
        notes.append(
            f"- `{result['recipe']}`, {kernels(machine)}: {result['date']}, "
            f"{cpu_words(machine)}, runs on {' or '.join(map(str, threads))} "
            f"thread{'s' * (threads != [1])}; an epoch is {result['epoch_gflop']:.0f} GFLOP, "
            f"{epoch_s:.2f} s at the peak{noted(result)}. "
            f"`{result['command']}` (`benchmarks/results/{result['file']}`)"
        )
    missing = [
        name for name in RECIPES if name not in {r["recipe"] for r in results}
    ]
    text = "\n".join(lines) + "\n\n" + "\n".join(notes) + "\n"
    if not results:
        text = "No results file yet.\n"
    if missing:
        names = ", ".join(f"`{name}`" for name in missing)
        text += f"\nNo results file yet for {names}.\n"
    return text


def default_run_table(directory: Path = RESULTS) -> str:
    """Per results file of ``benchmarks/default_run.py``: each program's median wall time, its runs and peak
    memory; what ``--precision auto`` chose; the machine, date and command."""
    parts = []
    for result in load_results("default_run", directory):
        machine, programs = result["machine"], result["programs"]
        lines = [
            f"| {result['epochs']} epochs, whole process ({kernels(machine)}) "
            "| median wall time | runs (s) | peak memory (median) |",
            "|---|---|---|---|",
        ]
        for name, runs in programs.items():
            lines.append(
                f"| {program_words(name)} | **{runs['median_wall_s']:.1f} s** "
                f"| {listed(runs['wall_s'], 1)} | {runs['median_peak_rss_mb']:,} MB |"
            )
        chose = sorted({choice["used"] for choice in result.get("auto_chose", [])})
        said = ""
        if chose:
            why = result["auto_chose"][0]["why"].removeprefix("auto: ")
            said = f" `--precision auto` chose {' or '.join(chose)} ({why})."
        parts.append(
            "\n".join(lines)
            + f"\n\n{result['date']}, {cpu_words(machine)}, medians of "
            f"{result['repeats']} alternating runs{noted(result)}.{said} "
            f"`{result['command']}` (`benchmarks/results/{result['file']}`)\n"
        )
    return "\n".join(parts) or "No results file yet.\n"


def program_words(name: str) -> str:
    if name.startswith("ours --precision "):
        return f"`examples/run.py --precision {name.split()[-1]}`"
    return {
        "plain": "plain hand-written program (`benchmarks/plain_program.py`)",
        "lightning": "Lightning (`benchmarks/lightning_program.py`)",
        "ignite example pattern": "Ignite's MNIST-example pattern",
    }.get(name, name)


def readme_speed_table(directory: Path = RESULTS) -> str:
    """The README's short version: the default run in each precision, and each recipe's mean test accuracy
    and wall times, with the machines and dates."""
    lines = ["| measured | result |", "|---|---|"]
    shown = []
    for result in load_results("default_run", directory):
        times = ", ".join(
            f"{short_name(name)} {runs['median_wall_s']:.1f} s"
            for name, runs in result["programs"].items()
        )
        chose = sorted({choice["used"] for choice in result.get("auto_chose", [])})
        auto = f" (auto chose {' or '.join(chose)})" if chose else ""
        lines.append(
            f"| the default run, {kernels(result['machine'])}, medians of "
            f"{result['repeats']} | {times}{auto} |"
        )
        shown.append(result)
    for result in load_results("time_to_accuracy", directory):
        rows = result["seeds"]
        tests = [100 * row["test_accuracy"] for row in rows]
        lines.append(
            f"| `--recipe {result['recipe']}`, {kernels(result['machine'])}, "
            f"{precision_words(rows)} | {listed(tests, 2)}% test "
            f"(mean {statistics.mean(tests):.2f}%) in "
            f"{listed([row['wall_s'] for row in rows], 1)} s |"
        )
        shown.append(result)
    if not shown:
        return "No results file yet.\n"
    machines = sorted({machine_words(r["machine"]) for r in shown})
    dates = sorted({r["date"] for r in shown})
    notes = sorted({r["note"] for r in shown if r.get("note")})
    when = dates[0] if len(dates) == 1 else f"{dates[0]} to {dates[-1]}"
    where = (
        "; ".join(machines) + f", {when}" + "".join(f"; {note}" for note in notes)
    )
    return "\n".join(lines) + f"\n\n{where}.\n"


def short_name(name: str) -> str:
    """A program of the default run in a word or two: "auto", "fp32", "plain", ..."""
    return name.removeprefix("ours --precision ")


def machine_words(machine: dict) -> str:
    """The CPU without its measured peak: what stays the same between sittings."""
    has = [
        "AVX512-BF16" if machine["avx512_bf16"] else "no AVX512-BF16",
        "AMX" if machine["amx"] else "no AMX",
    ]
    return (
        f"{machine['cpu']} ({', '.join(has)}), {machine['cores']} cores, "
        f"torch {machine['torch']}"
    )


# The records' targets (issue 41): mean test accuracy (%) and wall time per seed (s), held to AVX2 in fp32
# and on the CPU's own kernels with --precision auto.
TARGETS = {
    ("speed", True): (90.0, 15.0),
    ("speed", False): (90.0, 9.0),
    ("cnn", True): (94.0, 240.0),
    ("cnn", False): (94.0, 150.0),
}


def records_table(directory: Path = RESULTS) -> str:
    """Each record's results file against its target: the mean test accuracy over the seeds, the slowest
    seed's wall time, and whether both are met."""
    lines = [
        "| recipe | kernels | precision | seeds | mean test acc. | wall time per seed | "
        "in peak-epochs | target | met |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for result in load_results("time_to_accuracy", directory):
        rows, machine = result["seeds"], result["machine"]
        target = TARGETS.get((result["recipe"], machine["held_to_avx2"]))
        if target is None:
            continue
        tests = [100 * row["test_accuracy"] for row in rows]
        walls = [row["wall_s"] for row in rows]
        spread = f" ± {statistics.stdev(tests):.2f}" if len(tests) > 1 else ""
        accurate = statistics.mean(tests) >= target[0]
        fast = max(walls) <= target[1]
        met = (
            "yes"
            if accurate and fast
            else "accuracy only"
            if accurate
            else "time only"
            if fast
            else "no"
        )
        lines.append(
            f"| `{result['recipe']}` | {kernels(machine)} | {precision_words(rows)} "
            f"| {', '.join(str(row['seed']) for row in rows)} "
            f"| **{statistics.mean(tests):.2f}%{spread}** | {min(walls):.1f}-{max(walls):.1f} s "
            f"| {min(row['peak_epochs'] for row in rows):.1f}-{max(row['peak_epochs'] for row in rows):.1f} "
            f"| >= {target[0]:.1f}% in <= {target[1]:.0f} s | {met} |"
        )
    return "\n".join(lines) + "\n" if len(lines) > 2 else "No results file yet.\n"


def beyond_noise(
    difference: float, first: list[float], second: list[float]
) -> bool:
    """Whether ``difference`` of two means exceeds twice its standard error (the seeds' spread in each)."""
    if len(first) < 2 or len(second) < 2:
        return False
    error = (
        statistics.variance(first) / len(first)
        + statistics.variance(second) / len(second)
    ) ** 0.5
    return abs(difference) > 2 * error


def compared(values: list[float], base: list[float], unit: str, digits: int) -> str:
    """The mean of ``values`` less the mean of ``base``, marked ``*`` when beyond the seeds' noise."""
    delta = statistics.mean(values) - statistics.mean(base)
    return f"{delta:+.{digits}f}{unit}" + (
        " *" if beyond_noise(delta, values, base) else ""
    )


def mean_spread(values: list[float]) -> str:
    spread = f" ± {statistics.stdev(values):.2f}" if len(values) > 1 else ""
    return f"{statistics.mean(values):.2f}{spread}"


def ablation_table(directory: Path = RESULTS) -> str:
    """Per results file of ``benchmarks/ablation.py``: each variant's arithmetic, mean wall time, validation
    and test accuracy over the seeds, their differences from the record's, and whether each difference of
    accuracy exceeds the seeds' noise (a wall time's difference is the machine's load's as much as the
    variant's: its arithmetic is the fair comparison)."""
    parts = []
    for result in load_results("ablation", directory):
        variants = result["variants"]
        record = next(v for v in variants if v["name"] == "record")
        figures = {
            variant["name"]: {
                "wall": [row["wall_s"] for row in variant["seeds"]],
                "val": [100 * row["val_accuracy"] for row in variant["seeds"]],
                "test": [100 * row["test_accuracy"] for row in variant["seeds"]],
            }
            for variant in variants
        }
        base = figures["record"]
        lines = [
            f"| `{result['recipe']}` ({kernels(result['machine'])}) | change | training TFLOP "
            "| wall time (s) | vs the record | validation acc. (%) | vs the record "
            "| test acc. (%) | vs the record |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for variant in variants:
            mine = figures[variant["name"]]
            changes = ["", "", ""]
            if variant is not record:
                changes = [
                    f"{statistics.mean(mine['wall']) - statistics.mean(base['wall']):+.1f} s",  # the load's as much
                    compared(mine["val"], base["val"], "", 2),
                    compared(mine["test"], base["test"], "", 2),
                ]
            lines.append(
                f"| {variant['name']} | {variant['change']} | {variant['training_tflop']:.2f} "
                f"| {statistics.mean(mine['wall']):.1f} | {changes[0]} "
                f"| {mean_spread(mine['val'])} | {changes[1]} | {mean_spread(mine['test'])} | {changes[2]} |"
            )
        parts.append(
            "\n".join(lines)
            + f"\n\n{result['date']}, {cpu_words(result['machine'])}; seeds "
            f"{', '.join(str(row['seed']) for row in record['seeds'])} of each variant, alternating{noted(result)}. "
            f"`{result['command']}` (`benchmarks/results/{result['file']}`)\n"
        )
    return "\n".join(parts) or "No results file yet.\n"


def profile_table(directory: Path = RESULTS) -> str:
    """Per results file of ``benchmarks/profile_run.py``: the run's phases in seconds and shares."""
    parts = []
    for result in load_results("profile", directory):
        phases = result["phases"]
        whole = sum(row["seconds"] for row in phases)
        lines = [
            f"| `{result['recipe']}`, seed {result['seed']} ({kernels(result['machine'])}) | seconds | share |",
            "|---|---|---|",
        ]
        lines += [
            f"| {row['phase']} | {row['seconds']:.2f} | {row['seconds'] / whole:.0%} |"
            for row in phases
        ]
        lines.append(
            f"| **the whole process, under the profiler** | **{result['profiled_wall_s']:.1f}** | |"
        )
        lines.append(
            f"| the whole process, without it | {result['wall_s']:.1f} | |"
        )
        parts.append(
            "\n".join(lines)
            + f"\n\n{result['date']}, {cpu_words(result['machine'])}{noted(result)}. "
            f"`{result['command']}` (`benchmarks/results/{result['file']}`)\n"
        )
    return "\n".join(parts) or "No results file yet.\n"


def account_text(directory: Path = RESULTS) -> str:
    """The figures of records.md's account of the `speed` record held to AVX2: its training's arithmetic (the
    ablation's record), how fast its steps ran and what the rest of the process took (the profile), and what
    its target leaves the steps; the `cnn` record's wall times and share of the peak (its results file)."""
    parts = []
    profiles = [
        r
        for r in load_results("profile", directory)
        if r["recipe"] == "speed" and r["machine"]["held_to_avx2"]
    ]
    ablations = [
        r
        for r in load_results("ablation", directory)
        if r["recipe"] == "speed" and r["machine"]["held_to_avx2"]
    ]
    if profiles and ablations:
        profile = profiles[0]
        seconds = {row["phase"]: row["seconds"] for row in profile["phases"]}
        steps = sum(
            value
            for phase, value in seconds.items()
            if phase.startswith("training steps")
        )
        rest = sum(seconds.values()) - steps
        peak = profile["machine"]["fp32_matmul_peak_gflops"]
        tflop = next(v for v in ablations[0]["variants"] if v["name"] == "record")[
            "training_tflop"
        ]
        target = TARGETS[("speed", True)][1]
        imports = seconds["imports (torch, Ignite, the library)"]
        set_up = seconds["set-up: data, model, engines, precision, run directory"]
        parts.append(
            f"The `speed` record's training is {tflop:.2f} TFLOP: {1000 * tflop / peak:.1f} s at this CPU's fp32 matmul "
            f"peak ({peak:.0f} GFLOP/s when profiled). In the profile its steps take {steps:.1f} s, "
            f"{1000 * tflop / steps / peak:.0%} of that peak, and the rest of the process {rest:.1f} s "
            f"({imports:.1f} s of imports, {set_up:.1f} s of set-up). With the rest as it is, {target:.0f} s leaves "
            f"the steps {target - rest:.1f} s: {1 - (target - rest) / steps:.0%} less arithmetic at the same speed "
            "and accuracy."
        )
    cnn = [
        r
        for r in load_results("time_to_accuracy", directory)
        if r["recipe"] == "cnn" and r["machine"]["held_to_avx2"]
    ]
    if cnn:
        rows = cnn[0]["seeds"]
        shares = [
            cnn[0]["epoch_gflop"] / row["epoch_time_s"] / row["peak_gflops"]
            for row in rows
        ]
        parts.append(
            f"The `cnn` record's {rows[0]['epochs']} epochs take {min(r['wall_s'] for r in rows):.0f}-"
            f"{max(r['wall_s'] for r in rows):.0f} s held to AVX2, an epoch running at {min(shares):.0%}-"
            f"{max(shares):.0%} of the fp32 matmul peak."
        )
    return "\n\n".join(parts) + "\n" if parts else "No results file yet.\n"


BLOCKS: dict[str, Callable[[Path], str]] = {
    "time-to-accuracy": time_to_accuracy_table,
    "default-run": default_run_table,
    "readme-speed": readme_speed_table,
    "records": records_table,
    "ablation": ablation_table,
    "profile": profile_table,
    "account": account_text,
}


def fill(text: str, directory: Path | None = None) -> str:
    """``text`` with each generated block made anew from the results files in ``directory`` (``RESULTS``)."""
    directory = RESULTS if directory is None else directory

    def made(match: re.Match[str]) -> str:
        name = match["name"]
        if name not in BLOCKS:
            raise SystemExit(
                f"no generated block named {name!r}: {', '.join(BLOCKS)}"
            )
        return f"{match[1]}{BLOCKS[name](directory)}{match[4]}"

    return BLOCK.sub(made, text)


def write_pages() -> None:
    """For ``make docs``: the site's speed and records pages with their tables made from the results files."""
    import mkdocs_gen_files

    for page in PAGES[:-1]:
        with mkdocs_gen_files.open(page.name, "w") as out:
            out.write(fill(page.read_text()))


def main(argv: list[str]) -> int:
    """Write the tables into the pages (``--check``: only say which are out of date, exit 1 if any)."""
    stale = []
    for page in PAGES:
        text = page.read_text()
        made = fill(text)
        if made != text:
            stale.append(page)
            if "--check" not in argv:
                page.write_text(made)
    verb = "out of date" if "--check" in argv else "written"
    for page in stale:
        print(
            f"{page.relative_to(ROOT) if page.is_relative_to(ROOT) else page}: {verb}"
        )
    return 1 if stale and "--check" in argv else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
elif __name__ == "<run_path>":
    write_pages()
