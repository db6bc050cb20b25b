"""The benchmarks still run (on tiny synthetic data); their figures are measured by hand, never asserted."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

from conftest import write_synthetic

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


def test_time_to_accuracy_benchmark_runs_a_recipe(synthetic_dir, monkeypatch, capsys):
    benchmark = load("time_to_accuracy")
    monkeypatch.setattr(
        "sys.argv", ["time_to_accuracy.py", "--recipe", "fast", "--epochs", "2", "--data-dir", str(synthetic_dir)]
    )
    real_recipe = benchmark.recipe
    monkeypatch.setattr(
        benchmark,
        "recipe",
        lambda name, **kw: real_recipe(name, **kw, verify_data=False, val_size=100, batch_size=50),
    )
    benchmark.main()
    out = capsys.readouterr().out
    assert "recipe fast: 2 epochs" in out and "epoch   2:" in out and "final: best (epoch" in out


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
    assert default_run.describe_machine().startswith("machine: CPU ")


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
