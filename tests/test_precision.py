"""``--precision auto`` by measurement (issue #41): the faster of fp32 and bf16 where bf16 is native, timed on a
copy of the run's own step, cached per machine and model, and without effect on the run's weights."""

from __future__ import annotations

import json
import os
from datetime import date

import pytest
import torch
from helpers import assert_same_weights, final_weights

import fmnist_ignite.core.device as device_module
import fmnist_ignite.core.precision as precision_module
from fmnist_ignite import Config, train
from fmnist_ignite.core.device import choose_precision
from fmnist_ignite.core.models import Net
from fmnist_ignite.core.precision import measure_step_ms, measured, run_precision
from fmnist_ignite.files.precision_cache import CACHE_LIMIT, PrecisionCache, precision_cache_path

NATIVE = "AVX512 AVX512-BF16"
CPU = torch.device("cpu")


@pytest.fixture
def native_cpu(monkeypatch):
    """A CPU whose capability says native bf16, whatever this one is."""
    monkeypatch.setattr(device_module, "cpu_capability", lambda: NATIVE)


def timed(monkeypatch, fp32: float, bf16: float) -> list[int]:
    """Measurements that find ``fp32`` and ``bf16`` milliseconds a step; the batch size of each call, listed."""
    calls: list[int] = []

    def measure(config, model, device, batch_size):
        calls.append(batch_size)
        return {"fp32": fp32, "bf16": bf16}

    monkeypatch.setattr(precision_module, "measure_step_ms", measure)
    return calls


@pytest.mark.parametrize(
    "fp32, bf16, used, said",
    [
        (4.1, 5.9, "fp32", "took 4.1 ms a step in fp32 and 5.9 ms in bf16"),
        (4.1, 2.0, "bf16", "took 4.1 ms a step in fp32 and 2 ms in bf16"),
        (4.1, 3.9, "fp32", "took 4.1 ms a step in fp32 and 3.9 ms in bf16, less than 10% faster"),
    ],
)
def test_auto_runs_the_faster_by_measurement_and_a_second_run_reads_the_cache(
    monkeypatch, tmp_path, native_cpu, fp32, bf16, used, said
):
    calls = timed(monkeypatch, fp32, bf16)
    cache_file = tmp_path / "cache" / "precision.json"
    config, model = Config(precision="auto", batch_size=128), Net()
    chosen, why = run_precision(config, model, CPU, 1, PrecisionCache(cache_file))
    assert (chosen, why) == (used, f"auto: this {NATIVE} CPU {said}, measured as the run started")
    assert measured(model) == {"step_ms": {"fp32": fp32, "bf16": bf16}, "cached": False}
    assert calls == [128]

    again = run_precision(config, Net(), CPU, 1, PrecisionCache(cache_file))
    today = date.today().isoformat()
    assert again == (used, f"auto: this {NATIVE} CPU {said}, measured {today} and cached in {cache_file}")
    assert calls == [128]  # not measured again
    (entry,) = json.loads(cache_file.read_text())["measurements"].values()
    assert entry == {"fp32": fp32, "bf16": bf16, "date": today}

    other_batch = run_precision(config.replace(batch_size=64), Net(), CPU, 1, PrecisionCache(cache_file))
    assert calls == [128, 64] and "measured as the run started" in other_batch[1]  # another key
    assert run_precision(config, Net(), CPU, 1, PrecisionCache(None))[1].endswith("measured as the run started")
    assert calls == [128, 64, 128]  # no cache: measured every time


def refuse_link(path):
    target = path.with_name("elsewhere.json")
    target.write_text(json.dumps({"version": 1, "measurements": {}}))
    path.symlink_to(target)
    return "a symbolic link, not a precision cache of fmnist-ignite: refused"


def refuse_size(path):
    path.write_text(" " * (CACHE_LIMIT + 1))
    return f"{CACHE_LIMIT + 1:,} bytes, more than a precision cache of fmnist-ignite may be"


def refuse_json(path):
    path.write_text('{"version": 1, "measurements": {')
    return "not a precision cache of fmnist-ignite (not valid JSON"


def refuse_shape(path):
    path.write_text(json.dumps({"version": 1, "measurements": {"k": {"fp32": -1, "bf16": 2}}}))
    return "k: fp32: expected a positive number, got -1"


def refuse_directory(path):
    path.mkdir()
    return "a directory, not a precision cache"


@pytest.mark.parametrize("damage", [refuse_link, refuse_size, refuse_json, refuse_shape, refuse_directory])
def test_a_damaged_cache_is_refused_measured_around_and_left_as_it_is(monkeypatch, tmp_path, native_cpu, damage):
    calls = timed(monkeypatch, 4.0, 6.0)
    cache_file = tmp_path / "precision.json"
    reason = damage(cache_file)
    before = os.readlink(cache_file) if cache_file.is_symlink() else None
    for _ in range(2):
        chosen, why = run_precision(Config(precision="auto"), Net(), CPU, 1, PrecisionCache(cache_file))
        assert chosen == "fp32" and why.startswith(f"auto: this {NATIVE} CPU took 4 ms a step in fp32 and 6 ms")
        assert f"; cache not used: {cache_file}: " in why and reason in why, why
    assert len(calls) == 2  # measured each time, the file untouched
    assert (os.readlink(cache_file) if cache_file.is_symlink() else None) == before


def test_a_cache_that_cannot_be_written_is_no_error(monkeypatch, tmp_path, native_cpu):
    calls = timed(monkeypatch, 4.0, 2.0)
    (tmp_path / "a-file").write_text("")
    cache = PrecisionCache(tmp_path / "a-file" / "precision.json")  # its directory cannot be made
    assert run_precision(Config(precision="auto"), Net(), CPU, 1, cache)[0] == "bf16"
    assert run_precision(Config(precision="auto"), Net(), CPU, 1, cache)[0] == "bf16"
    assert len(calls) == 2


def test_where_the_cache_is_and_how_the_environment_turns_it_off(tmp_path):
    home = precision_cache_path({})
    assert home is not None and home.parts[-3:] == (".cache", "fmnist-ignite", "precision.json")
    xdg = precision_cache_path({"XDG_CACHE_HOME": str(tmp_path)})
    assert xdg == tmp_path / "fmnist-ignite" / "precision.json"
    named = precision_cache_path({"FMNIST_PRECISION_CACHE": str(tmp_path / "mine.json"), "XDG_CACHE_HOME": "/x"})
    assert named == tmp_path / "mine.json"
    for off in ("0", "off", "false", "No"):
        assert precision_cache_path({"FMNIST_PRECISION_CACHE": off}) is None
    assert PrecisionCache.from_environment({"FMNIST_PRECISION_CACHE": "0"}).path is None


def never_measured(*args, **kwargs):
    raise AssertionError("measured where nothing is to be measured")


@pytest.mark.parametrize("capability", ["AVX2", "DEFAULT", "AVX512", "AVX2 AVX512-BF16 AMX"])
def test_without_native_bf16_auto_is_fp32_and_nothing_is_measured_or_cached(monkeypatch, tmp_path, capability):
    monkeypatch.setattr(device_module, "cpu_capability", lambda: capability)
    monkeypatch.setattr(precision_module, "measure_step_ms", never_measured)
    model, cache_file = Net(), tmp_path / "precision.json"
    chosen = run_precision(Config(precision="auto"), model, CPU, 1, PrecisionCache(cache_file))
    assert chosen == choose_precision("auto", "cpu") and chosen[0] == "fp32"
    assert measured(model) is None and not cache_file.exists()


@pytest.mark.parametrize("asked", ["fp32", "bf16"])
def test_a_precision_asked_for_is_taken_without_measuring(monkeypatch, native_cpu, asked):
    monkeypatch.setattr(precision_module, "measure_step_ms", never_measured)
    assert run_precision(Config(precision=asked), Net(), CPU) == (asked, "asked for")


def test_the_measurement_times_both_precisions_and_draws_nothing_of_the_processes_generators():
    import random

    import numpy

    config = Config(precision="auto", batch_size=32, dropout=0.2, optimizer="adamw")
    model = Net(dropout=0.2)
    torch.manual_seed(5)
    random.seed(5)
    numpy.random.seed(5)
    states = torch.get_rng_state(), random.getstate(), numpy.random.get_state()[1].copy()
    weights = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    step_ms = measure_step_ms(config, model, CPU, 32)
    assert set(step_ms) == {"fp32", "bf16"} and all(ms > 0 for ms in step_ms.values())
    assert torch.equal(torch.get_rng_state(), states[0]) and random.getstate() == states[1]
    assert (numpy.random.get_state()[1] == states[2]).all()
    assert_same_weights(model.state_dict(), weights)  # a copy was trained


def test_a_run_trains_to_the_same_weights_whether_it_measured_or_not(
    monkeypatch, tmp_path, small_config, native_cpu, said
):
    real = precision_module.measure_step_ms
    calls = []

    def measure_then_say_fp32_is_faster(*args):
        calls.append(real(*args))  # the real measurement, its steps taken on copies
        return {"fp32": 1.0, "bf16": 2.0}

    monkeypatch.setattr(precision_module, "measure_step_ms", measure_then_say_fp32_is_faster)
    monkeypatch.setenv("FMNIST_PRECISION_CACHE", str(tmp_path / "precision.json"))
    config = small_config.replace(epochs=1, dropout=0.2)
    auto = train(config.replace(precision="auto", output_dir=str(tmp_path / "auto")))
    asked = train(config.replace(precision="fp32", output_dir=str(tmp_path / "fp32")))
    assert len(calls) == 1
    assert_same_weights(final_weights(auto), final_weights(asked))
    why = f"auto: this {NATIVE} CPU took 1 ms a step in fp32 and 2 ms in bf16, measured as the run started"
    assert said()[1] == f"Precision: fp32 ({why})"
    summary = json.loads((auto.output_dir / "summary.json").read_text())
    assert summary["precision"] == {"used": "fp32", "why": why, "step_ms": {"fp32": 1.0, "bf16": 2.0}, "cached": False}


def test_a_resumed_run_trains_on_in_the_precision_its_run_chose_and_evaluate_scores_in_it(
    monkeypatch, tmp_path, small_config, native_cpu, said
):
    monkeypatch.setenv("FMNIST_PRECISION_CACHE", "0")
    timed(monkeypatch, fp32=4.0, bf16=2.0)  # bf16 faster when the run starts
    config = small_config.replace(precision="auto", epochs=1, output_dir=str(tmp_path / "run"))
    train(config)
    calls = timed(monkeypatch, fp32=2.0, bf16=4.0)  # today fp32 would be: the resume must not switch
    resumed = train(config.replace(resume="auto", epochs=2))
    assert calls == [] and "Precision: bf16 (auto: as the run it continues chose (its summary.json))" in said()
    summary = json.loads((resumed.output_dir / "summary.json").read_text())
    assert summary["precision"]["used"] == "bf16"
    from fmnist_ignite.analysis import inference

    chosen = []
    real = inference.choose_precision
    monkeypatch.setattr(
        inference, "choose_precision", lambda asked, device: chosen.append(asked) or real(asked, device)
    )
    inference.evaluate_checkpoint(resumed.output_dir, config.data_dir, "cpu", verify=False)
    assert chosen == ["bf16"]  # as its run trained, not the flag rule's guess
