"""The benchmarks still run (on tiny synthetic data); their figures are measured by hand, never asserted."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import small_config_file, write_synthetic

from fmnist_ignite import Config
from fmnist_ignite.data.fashion_mnist import load_fashion_mnist
from fmnist_ignite.data.splits import make_splits

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def load(name):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_throughput_benchmark_measures_all_three_pipelines(synthetic_dir):
    throughput = load("throughput")
    config = Config(batch_size=50, patience=2, val_size=100)
    splits = make_splits(load_fashion_mnist(synthetic_dir, verify=False), config.val_size, config.split_seed)
    for samples_per_second in (
        throughput.tutorial_pipeline(config, splits["train"]),
        throughput.plain_loop(config, splits["train"]),
        *throughput.our_trainer(config, splits),
    ):
        assert samples_per_second > 0
    assert round(throughput.FLOP_PER_SAMPLE * 60_000 / 1e9, 1) == 240.7  # the "about 241 GFLOP" an epoch
    assert throughput.matmul_peak_gflops(n=256, repeats=2) > 0


def test_time_to_accuracy_benchmark_runs_a_recipe_and_writes_the_results_file_the_docs_are_made_from(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    benchmark = load("time_to_accuracy")
    config = small_config_file(tmp_path, epochs=2, batch_size=50)  # its data, its verify_data: false
    results = tmp_path / "results"
    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
    monkeypatch.setattr(
        "sys.argv",
        ["time_to_accuracy.py", "--recipes", "fast", "--seeds", "0,1", "--target", "0.5", "--note", "a test"]
        + ["--results-dir", str(results), "--data-dir", str(tmp_path / "data")]
        + ["--", "--config", str(config), "--epochs", "2", "--batch-size", "50"],
    )
    monkeypatch.setattr(benchmark, "matmul_peak_gflops", lambda: 100.0)  # the machine's: measured by hand
    monkeypatch.setattr(sys.modules["results_file"], "matmul_peak_gflops", lambda: 100.0)
    benchmark.main()
    printed = capsys.readouterr().out
    result = json.loads((results / "time_to_accuracy-fast-native.json").read_text())
    assert [row["seed"] for row in result["seeds"]] == [0, 1] and result["note"] == "a test"
    assert result["machine"]["fp32_matmul_peak_gflops"] == 100.0 and result["machine"]["held_to_avx2"] is False
    assert {"cpu", "capability", "avx512_bf16", "amx", "threads", "torch", "cores"} <= set(result["machine"])
    assert result["date"] and result["command"].startswith("python benchmarks/time_to_accuracy.py --recipes fast")
    # a step of fast (batch 256): forward 2 FLOPs a weight, backward 2 for the weights' gradients and 2 for the
    # inputs' of layers 2 and 3 (no gradient for the images): 4 W + 2 (512 x 512 + 512 x 10) an image
    weights = 784 * 512 + 512 * 512 + 512 * 10
    assert benchmark.step_gflop("fast") == pytest.approx(
        (4 * weights + 2 * (512 * 512 + 512 * 10)) * 256 / 1e9, rel=1e-3
    )
    assert result["epoch_gflop"] == pytest.approx(benchmark.step_gflop("fast") * 215, abs=0.1)  # 55,000 / 256
    for row in result["seeds"]:
        assert row["wall_s"] > 0 and 1 <= row["epochs"] <= 2 and 0 <= row["val_accuracy"] <= 1  # stopped at 50%
        assert row["peak_epochs"] == pytest.approx(row["wall_s"] / (result["epoch_gflop"] / 100.0), abs=0.01)
        assert row["precision"]["used"] in ("fp32", "bf16")
    (line,) = [line for line in printed.splitlines() if line.startswith("| `fast`")]
    tests = [f"{100 * row['test_accuracy']:.2f}" for row in result["seeds"]]
    assert f"| {', '.join(tests)} |" in line  # the runs' summaries, as printed
    assert "target 50% validation" in printed

    spec = importlib.util.spec_from_file_location("gen_speed", BENCHMARKS.parent / "docs" / "gen_speed.py")
    gen_speed = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen_speed)
    table = gen_speed.time_to_accuracy_table(results)  # the docs' table, from this file
    (row,) = [line for line in table.splitlines() if line.startswith("| `fast`")]
    assert f"| {', '.join(tests)} |" in row and "time_to_accuracy-fast-native.json" in table


def test_the_floor_and_the_ignite_example_pattern_train_and_report(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    default_run = load("default_run")
    raw = tmp_path / "data" / "FashionMNIST" / "raw"
    write_synthetic(raw, gz=False)
    python = sys.executable
    plain = [python, str(BENCHMARKS / "plain_program.py"), str(raw), str(tmp_path / "out"), "--epochs", "1"]
    example = [python, str(BENCHMARKS / "ignite_example.py"), str(tmp_path / "data"), "--epochs", "1"]
    for command in (plain, example):
        seconds, peak_mb = default_run.timed(command)
        assert seconds > 0 and peak_mb > 50  # a process that imported torch
    printed = subprocess.run(plain, capture_output=True, text=True, check=True).stdout
    assert "Training completed" in printed and printed.count("Validation: Accuracy: ") == 1
    assert (tmp_path / "out" / "1.pt").is_file()
    printed = subprocess.run(example, capture_output=True, text=True, check=True).stdout
    assert "Training Results - Epoch: 1" in printed and "Validation Results - Epoch: 1" in printed
    described = default_run.machine(peak_gflops=123.0)
    assert default_run.describe(described).startswith("machine: ") and "123 GFLOP/s" in default_run.describe(described)


def test_the_overhead_benchmark_times_each_per_iteration_item(monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # it imports describe_machine from throughput.py
    overhead = load("overhead")
    monkeypatch.setattr(sys, "argv", ["overhead.py", "--repeats", "1", "--calls", "50"])
    overhead.main()
    out = capsys.readouterr().out
    assert out.startswith("machine: CPU ") and "Ignite Engine around a no-op step" in out
    for item in ("EpochLossAverage._add", "stop_mid_epoch", "log_loss (through its event filter)", "update function"):
        assert item in out, item
    assert "TerminateOnNan" not in out  # its per-step check is folded into the loss sum's


def test_the_runs_listing_benchmark_times_the_command_over_synthetic_runs(tmp_path, monkeypatch, capsys):
    benchmark = load("runs_listing")
    out = tmp_path / "runs_listing.json"
    monkeypatch.setattr("sys.argv", ["runs_listing.py", "--runs", "40", "--repeats", "1", "--out", str(out)])
    benchmark.main()
    result = json.loads(out.read_text())
    assert result["runs"] == result["rows_listed"] == 40 and result["process_s_median"] > 0
    assert result["statuses"] == {"damaged": 2, "failed": 2, "finished": 32, "interrupted": 4}
    assert result["cpu"] and "40 runs" in capsys.readouterr().out


def small_settings(tmp_path) -> dict:
    """The settings of a small synthetic run, as a variant's settings file takes them."""
    import yaml

    return yaml.safe_load(small_config_file(tmp_path, epochs=1, batch_size=50).read_text())


def test_the_ablation_runs_each_variant_per_seed_and_writes_what_the_records_page_is_made_from(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    ablation = load("ablation")
    small = small_settings(tmp_path)
    variants = [
        ("record", "the recipe as it is", small),
        ("ns-2", "2 Newton-Schulz iterations", {**small, "ns_steps": 2}),
    ]
    monkeypatch.setitem(ablation.VARIANTS, "speed", variants)
    results = tmp_path / "results"
    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
    monkeypatch.setattr(
        "sys.argv",
        ["ablation.py", "--recipe", "speed", "--seeds", "0,1", "--results-dir", str(results)]
        + ["--data-dir", small["data_dir"]],
    )
    monkeypatch.setattr(sys.modules["results_file"], "matmul_peak_gflops", lambda: 100.0)
    ablation.main()
    result = json.loads((results / "ablation-speed-native.json").read_text())
    assert [v["name"] for v in result["variants"]] == ["record", "ns-2"]
    for variant in result["variants"]:
        assert [row["seed"] for row in variant["seeds"]] == [0, 1]
        assert all(row["epochs"] == 1 and 0 <= row["test_accuracy"] <= 1 for row in variant["seeds"])
    record, fewer = result["variants"]
    assert 0 < fewer["training_tflop"] < record["training_tflop"]  # 2 iterations instead of 3: less arithmetic
    with pytest.raises(SystemExit, match="unknown variant 'nope' of speed"):
        monkeypatch.setattr("sys.argv", ["ablation.py", "--recipe", "speed", "--variants", "record,nope"])
        ablation.main()


def test_the_profile_cuts_a_whole_run_into_phases_that_add_up_to_it(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    profile = load("profile_run")
    config = small_config_file(tmp_path, epochs=1, batch_size=50)
    real_run = profile.run
    monkeypatch.setattr(  # the small run's settings file in place of the recipe's data
        profile,
        "run",
        lambda recipe, seed, data_dir, out: real_run(recipe, seed, data_dir, out, ["--config", str(config)]),
    )
    results = tmp_path / "results"
    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
    monkeypatch.setattr(
        "sys.argv",
        ["profile_run.py", "--recipe", "tutorial", "--results-dir", str(results)]
        + ["--data-dir", small_settings(tmp_path)["data_dir"]],
    )
    monkeypatch.setattr(sys.modules["results_file"], "matmul_peak_gflops", lambda: 100.0)
    profile.main()
    result = json.loads((results / "profile-tutorial-native.json").read_text())
    seconds = {row["phase"]: row["seconds"] for row in result["phases"]}
    assert seconds["imports (torch, Ignite, the library)"] > 0.3  # torch alone takes longer
    # SGD without a schedule: its step is the optimizer's own, not a schedule's wrapper of it
    assert seconds["training steps: optimizer"] > 0 and seconds["training steps: backward"] > 0
    assert seconds["the rest (argument parsing, launch, exit)"] >= 0  # no phase counted twice
    whole = sum(row["seconds"] for row in result["phases"])
    assert 0.5 * result["profiled_wall_s"] <= whole <= result["profiled_wall_s"]  # the process, less its start-up
    assert result["wall_s"] > 0


def test_a_benchmark_run_that_does_not_end_stops_the_benchmark_with_one_line(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    benchmark = load("time_to_accuracy")
    monkeypatch.setattr(benchmark, "RUN_TIMEOUT_S", 0.5)  # less than the imports take
    with pytest.raises(SystemExit, match=r"^speed seed 0: no end after 0.5 s"):
        benchmark.run_seed("speed", 0, str(tmp_path), None, [])
