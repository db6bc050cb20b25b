"""The measured tables of docs/speed.md and the README come from the results files the benchmarks write
(``benchmarks/results/*.json``), through ``docs/gen_speed.py``: a table that disagrees with its file fails here."""

from __future__ import annotations

import copy
import importlib.util
import json
import re

import pytest
from helpers import ROOT

RESULTS = ROOT / "benchmarks" / "results"


@pytest.fixture
def gen_speed():
    spec = importlib.util.spec_from_file_location("gen_speed", ROOT / "docs" / "gen_speed.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MACHINE = {
    "cpu": "Some CPU",
    "capability": "AVX512",
    "avx512_bf16": True,
    "amx": False,
    "held_to_avx2": False,
    "environment": {},
    "cores": 2,
    "threads": 2,
    "torch": "2.14.1",
    "fp32_matmul_peak_gflops": 200.0,
}


def seed_row(seed: int, wall: float, test: float, used: str = "fp32") -> dict:
    return {
        "seed": seed,
        "wall_s": wall,
        "epochs": 9,
        "val_accuracy": test - 0.001,
        "test_accuracy": test,
        "epoch_time_s": 2.0,
        "threads": 2,
        "target": None,
        "precision": {"used": used, "why": f"auto: measured {used}"},
        "peak_gflops": 200.0,
        "peak_epochs": round(wall / (264 / 200), 2),
    }


def write(directory, name, result):
    directory.mkdir(exist_ok=True)
    (directory / name).write_text(json.dumps({"date": "2026-12-07", **result}))


def speed_results(held: bool, walls: list[float]) -> dict:
    return {
        "benchmark": "time_to_accuracy",
        "recipe": "speed",
        "command": "python benchmarks/time_to_accuracy.py --recipes speed --seeds 0,1,2",
        "note": "shared",
        "machine": {**MACHINE, "held_to_avx2": held, "capability": "AVX2" if held else "AVX512"},
        "epoch_gflop": 264.0,
        "seeds": [seed_row(seed, wall, 0.903 + seed / 1000) for seed, wall in enumerate(walls)],
    }


def test_every_generated_table_in_the_pages_is_what_its_results_files_say(gen_speed):
    speed = (ROOT / "docs" / "speed.md").read_text()
    assert {"time-to-accuracy", "default-run"} <= set(re.findall(r"<!-- generated: ([\w-]+) ", speed))
    for page in gen_speed.PAGES:
        text = page.read_text()
        assert gen_speed.fill(text) == text, f"{page.name}: out of date: run python docs/gen_speed.py"
    assert gen_speed.main(["--check"]) == 0


def test_a_table_shows_the_recipes_with_results_files_and_names_those_without(gen_speed, tmp_path):
    write(tmp_path, "time_to_accuracy-speed-native.json", speed_results(False, [13.6, 12.7, 13.1]))
    write(tmp_path, "time_to_accuracy-speed-avx2.json", speed_results(True, [22.8, 22.2, 24.0]))
    table = gen_speed.time_to_accuracy_table(tmp_path)
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    assert rows == [  # held to AVX2 first
        "| `speed` | held to AVX2 | fp32 (auto) | 9 | 22.8, 22.2, 24.0 | 17.3, 16.8, 18.2 | 90.20, 90.30, 90.40 "
        "| 90.30, 90.40, 90.50 | **90.40% ± 0.10** |",
        "| `speed` | AVX512 | fp32 (auto) | 9 | 13.6, 12.7, 13.1 | 10.3, 9.6, 9.9 | 90.20, 90.30, 90.40 "
        "| 90.30, 90.40, 90.50 | **90.40% ± 0.10** |",
    ]
    assert "2026-12-07, Some CPU (AVX512-BF16, no AMX), 2 cores, torch 2.14.1, fp32 matmul peak 200 GFLOP/s" in table
    assert "; shared." in table and "(`benchmarks/results/time_to_accuracy-speed-avx2.json`)" in table
    assert table.endswith("\nNo results file yet for `tutorial`, `best`, `fast`, `cnn`.\n")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert gen_speed.time_to_accuracy_table(empty).startswith("No results file yet.")


def test_a_number_changed_by_hand_or_a_changed_results_file_fails_the_check(gen_speed, tmp_path, monkeypatch):
    results = tmp_path / "results"
    result = speed_results(True, [22.8, 22.2, 24.0])
    write(results, "time_to_accuracy-speed-avx2.json", result)
    page = tmp_path / "speed.md"
    page.write_text(
        "# Speed\n\n<!-- generated: time-to-accuracy (from the results) -->\n<!-- end: time-to-accuracy -->\n\nEnd.\n"
    )
    monkeypatch.setattr(gen_speed, "PAGES", [page])
    monkeypatch.setattr(gen_speed, "RESULTS", results)
    assert gen_speed.main(["--check"]) == 1 and "22.8, 22.2, 24.0" not in page.read_text()  # --check writes nothing
    assert gen_speed.main([]) == 0 and "| 22.8, 22.2, 24.0 |" in page.read_text()
    assert page.read_text().endswith("<!-- end: time-to-accuracy -->\n\nEnd.\n")
    assert gen_speed.main(["--check"]) == 0

    page.write_text(page.read_text().replace("22.8, 22.2", "21.8, 22.2"))  # edited by hand
    assert gen_speed.main(["--check"]) == 1
    gen_speed.main([])
    changed = copy.deepcopy(result)
    changed["seeds"][0]["wall_s"] = 25.0  # a new sitting
    write(results, "time_to_accuracy-speed-avx2.json", changed)
    assert gen_speed.main(["--check"]) == 1


def test_the_default_run_table_and_the_readme_block_come_from_the_default_run_file(gen_speed, tmp_path):
    write(tmp_path, "time_to_accuracy-speed-avx2.json", speed_results(True, [22.8, 22.2, 24.0]))
    programs = {
        name: {"wall_s": walls, "peak_rss_mb": [900, 910], "median_wall_s": sorted(walls)[0], "median_peak_rss_mb": 905}
        for name, walls in (("ours --precision auto", [15.1, 15.3]), ("ours --precision bf16", [21.8, 22.0]))
    }
    auto = {
        "used": "fp32",
        "why": "auto: this CPU took 1 ms a step in fp32 and 2 ms in bf16, measured as the run started",
    }
    write(
        tmp_path,
        "default_run-native.json",
        {
            "benchmark": "default_run",
            "command": "python benchmarks/default_run.py --repeats 2 --precisions auto,bf16",
            "note": "",
            "machine": MACHINE,
            "epochs": 5,
            "repeats": 2,
            "programs": programs,
            "auto_chose": [auto, auto],
        },
    )
    table = gen_speed.default_run_table(tmp_path)
    assert "| `examples/run.py --precision auto` | **15.1 s** | 15.1, 15.3 | 905 MB |" in table
    assert "| `examples/run.py --precision bf16` | **21.8 s** | 21.8, 22.0 | 905 MB |" in table
    assert f"`--precision auto` chose fp32 ({auto['why'].removeprefix('auto: ')})." in table
    readme = gen_speed.readme_speed_table(tmp_path)
    assert "| the default run, AVX512, medians of 2 | auto 15.1 s, bf16 21.8 s (auto chose fp32) |" in readme
    assert "| `--recipe speed`, held to AVX2, fp32 (auto) | 90.30, 90.40, 90.50% test (mean 90.40%) in 22.8" in readme
    assert readme.endswith("\n\nSome CPU (AVX512-BF16, no AMX), 2 cores, torch 2.14.1, 2026-12-07; shared.\n")
    assert readme.endswith("\n\nSome CPU (AVX512-BF16, no AMX), 2 cores, torch 2.14.1, 2026-12-07; shared.\n")


def test_a_broken_results_file_is_named(gen_speed, tmp_path):
    (tmp_path / "time_to_accuracy-speed-avx2.json").write_text("{")
    with pytest.raises(SystemExit, match="time_to_accuracy-speed-avx2.json: not a results file"):
        gen_speed.time_to_accuracy_table(tmp_path)


def test_the_records_table_says_which_target_each_results_file_meets(gen_speed, tmp_path):
    write(tmp_path, "time_to_accuracy-speed-avx2.json", speed_results(True, [14.8, 14.2, 15.5]))
    write(tmp_path, "time_to_accuracy-speed-native.json", speed_results(False, [8.2, 8.9, 8.5]))
    rows = [line for line in gen_speed.records_table(tmp_path).splitlines() if line.startswith("| `")]
    assert rows == [
        "| `speed` | held to AVX2 | fp32 (auto) | 0, 1, 2 | **90.40% ± 0.10** | 14.2-15.5 s | 10.8-11.7 "
        "| >= 90.0% in <= 15 s | accuracy only |",  # its slowest seed took over 15 s
        "| `speed` | AVX512 | fp32 (auto) | 0, 1, 2 | **90.40% ± 0.10** | 8.2-8.9 s | 6.2-6.7 "
        "| >= 90.0% in <= 9 s | yes |",
    ]
    slow = speed_results(False, [8.2, 8.9, 8.5])
    for row in slow["seeds"]:
        row["test_accuracy"] -= 0.01  # 89.4% on average
    write(tmp_path, "time_to_accuracy-speed-native.json", slow)
    assert gen_speed.records_table(tmp_path).splitlines()[-1].endswith("| time only |")


def ablation_results(record: list[float], variant: list[float], walls: list[float]) -> dict:
    def seeds(tests: list[float], wall: list[float]) -> list[dict]:
        return [seed_row(seed, w, t) for seed, (t, w) in enumerate(zip(tests, wall, strict=True))]

    return {
        "benchmark": "ablation",
        "recipe": "speed",
        "command": "python benchmarks/ablation.py --recipe speed --seeds 0,1,2",
        "note": "",
        "machine": MACHINE,
        "variants": [
            {
                "name": "record",
                "change": "the recipe as it is",
                "settings": {},
                "training_tflop": 2.37,
                "seeds": seeds(record, [20, 21, 22]),
            },
            {
                "name": "ns-2",
                "change": "2 iterations",
                "settings": {"ns_steps": 2},
                "training_tflop": 2.13,
                "seeds": seeds(variant, walls),
            },
        ],
    }


def test_an_ablation_marks_only_the_differences_beyond_the_seeds_noise(gen_speed, tmp_path):
    # test accuracy 0.6 points lower with a spread of 0.1: beyond the noise; wall time 1 s less with a spread
    # of 1 s: within it
    write(
        tmp_path,
        "ablation-speed-avx2.json",
        ablation_results([0.902, 0.903, 0.904], [0.896, 0.897, 0.898], [19, 20, 21]),
    )
    table = gen_speed.ablation_table(tmp_path)
    # (validation: seed_row's test accuracy less 0.1 points)
    assert "| record | the recipe as it is | 2.37 | 21.0 |  | 90.20 ± 0.10 |  | 90.30 ± 0.10 |  |" in table
    assert "| ns-2 | 2 iterations | 2.13 | 20.0 | -1.0 s | 89.60 ± 0.10 | -0.60 * | 89.70 ± 0.10 | -0.60 * |" in table
    write(
        tmp_path,
        "ablation-speed-avx2.json",
        ablation_results([0.902, 0.903, 0.904], [0.898, 0.904, 0.910], [19, 20, 21]),
    )
    assert "| 90.40 ± 0.60 | +0.10 |" in gen_speed.ablation_table(tmp_path)  # a spread of 0.6: within the noise


def test_the_profile_table_gives_each_phase_its_share(gen_speed, tmp_path):
    phases = [{"phase": "imports", "seconds": 3.0}, {"phase": "training steps: backward", "seconds": 9.0}]
    write(
        tmp_path,
        "profile-speed-avx2.json",
        {
            "benchmark": "profile",
            "recipe": "speed",
            "seed": 0,
            "command": "python benchmarks/profile_run.py --recipe speed",
            "note": "",
            "machine": {**MACHINE, "held_to_avx2": True},
            "wall_s": 10.5,
            "profiled_wall_s": 12.4,
            "phases": phases,
        },
    )
    table = gen_speed.profile_table(tmp_path)
    assert "| imports | 3.00 | 25% |" in table and "| training steps: backward | 9.00 | 75% |" in table
    assert "| the whole process, without it | 10.5 | |" in table


def test_the_account_of_the_speed_record_is_computed_from_its_profile_and_ablation(gen_speed, tmp_path):
    held = {**MACHINE, "held_to_avx2": True}
    phases = [
        {"phase": "imports (torch, Ignite, the library)", "seconds": 3.0},
        {"phase": "set-up: data, model, engines, precision, run directory", "seconds": 1.0},
        {"phase": "training steps: forward and loss", "seconds": 4.0},
        {"phase": "training steps: backward", "seconds": 4.0},
        {"phase": "training steps: optimizer", "seconds": 2.0},
        {"phase": "the finish: best weights, calibration, test, summary", "seconds": 1.0},
    ]
    profile = {"benchmark": "profile", "recipe": "speed", "seed": 0, "command": "", "note": "", "machine": held}
    write(tmp_path, "profile-speed-avx2.json", {**profile, "wall_s": 14.0, "profiled_wall_s": 15.0, "phases": phases})
    ablation = ablation_results([0.902, 0.903, 0.904], [0.896, 0.897, 0.898], [19, 20, 21])
    write(tmp_path, "ablation-speed-avx2.json", {**ablation, "machine": held})
    text = gen_speed.account_text(tmp_path)
    # 2.37 TFLOP at 200 GFLOP/s: 11.8 s; in 10 s of steps, 118% of that peak; the rest, 5 s, leaves 10 s of 15
    assert "training is 2.37 TFLOP: 11.8 s at this CPU's fp32 matmul peak (200 GFLOP/s when profiled)" in text
    assert "its steps take 10.0 s, 118% of that peak, and the rest of the process 5.0 s (3.0 s of imports" in text
    assert "15 s leaves the steps 10.0 s: 0% less arithmetic" in text
    assert "`cnn`" not in text  # no cnn results file here
