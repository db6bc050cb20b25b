"""Fast on every machine: a command line that answers before torch loads, precision chosen for the
hardware, and splits kept as uint8."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from helpers import ROOT

import fmnist_ignite.core.device as engines
from fmnist_ignite import train
from fmnist_ignite.core.device import choose_precision
from fmnist_ignite.core.threads import usable_cores
from fmnist_ignite.data.loaders import TensorLoader, make_loader, to_float_images

# The command line runs with these made unimportable: any import of them fails loudly.
WITHOUT_HEAVY_IMPORTS = """
import runpy, sys
sys.modules.update(dict.fromkeys(["torch", "torchvision", "matplotlib", "ignite", "numpy", "PIL"]))
sys.argv = [sys.argv[1], *sys.argv[2:]]
runpy.run_path(sys.argv[0], run_name="__main__") if sys.argv[0].endswith(".py") else runpy.run_module(
    sys.argv[0], run_name="__main__", alter_sys=True
)
"""


def run_without_torch(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_HEAVY_IMPORTS, *argv], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize(
    "argv, code, out, err",
    [
        ([str(ROOT / "examples" / "run.py"), "--help"], 0, "usage: run.py", ""),
        ([str(ROOT / "examples" / "run.py"), "--version"], 0, "fmnist-ignite 0.1.0\n", ""),
        ([str(ROOT / "examples" / "run.py"), "--lr", "-1"], 2, "", "error: --lr -1.0: must be > 0\n"),
        ([str(ROOT / "examples" / "run.py"), "--data-dir", "/no/such/dir"], 2, "", "error: --data-dir /no/such/dir:"),
        (["fmnist_ignite", "train", "--batch-size", "0"], 2, "", "error: --batch-size 0: must be at least 1\n"),
        (["fmnist_ignite", "--help"], 0, "usage: fmnist-ignite", ""),
    ],
)
def test_help_version_and_bad_values_answer_without_importing_torch(argv, code, out, err):
    proc = run_without_torch(*argv)
    assert proc.returncode == code, proc.stderr
    assert proc.stdout.startswith(out) and proc.stderr.startswith(err), (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "capability, chosen",
    [
        ("DEFAULT", "fp32"),
        ("AVX2", "fp32"),
        ("AVX512", "fp32"),
        ("AVX512 AVX512-BF16", "bf16"),
        ("AVX512 AVX512-BF16 AMX", "bf16"),
    ],
)
def test_auto_precision_is_bf16_only_where_the_cpu_computes_it_natively(monkeypatch, capability, chosen):
    monkeypatch.setattr(engines, "cpu_capability", lambda: capability)
    precision, why = choose_precision("auto", "cpu")
    assert precision == chosen
    assert why == f"auto: this {capability} CPU " + (
        "computes bf16 natively" if chosen == "bf16" else "has no native bf16"
    )
    assert choose_precision("fp32", "cpu") == ("fp32", "asked for")


def test_a_cpu_held_to_avx2_kernels_gets_fp32_though_its_flags_have_bf16(monkeypatch):
    monkeypatch.setattr(engines, "cpu_capability", lambda: "AVX2 AVX512-BF16 AMX")  # ATEN_CPU_CAPABILITY=avx2
    assert choose_precision("auto", "cpu") == (
        "fp32",
        "auto: this AVX2 AVX512-BF16 AMX CPU held to torch's AVX2 kernels (ATEN_CPU_CAPABILITY) has no native bf16",
    )


def test_bf16_asked_for_without_native_support_runs_and_says_it_is_slower(monkeypatch, small_config, said):
    monkeypatch.setattr(engines, "cpu_capability", lambda: "AVX2")
    result = train(small_config.replace(precision="bf16", epochs=1))
    warning = "bf16 (asked for, but this AVX2 CPU has no native bf16: bf16 autocast will be slower than fp32 here)"
    cores = usable_cores()
    assert said()[:2] == [f"CPU: 1 thread of {cores} core{'s' * (cores != 1)} (--threads)", f"Precision: {warning}"]
    summary = json.loads((result.output_dir / "summary.json").read_text())
    assert summary["precision"] == {"used": "bf16", "why": warning[len("bf16 (") : -1]}


def test_native_bf16_hardware_gets_no_warning(monkeypatch, small_config, said):
    monkeypatch.setattr(engines, "cpu_capability", lambda: "AVX512 AVX512-BF16")
    train(small_config.replace(precision="bf16", epochs=1))
    assert said()[1] == "Precision: bf16 (asked for)"


def test_the_uint8_loader_gives_the_same_batches_as_float_tensors_in_a_quarter_of_the_memory():
    images = torch.randint(0, 256, (230, 28, 28), dtype=torch.uint8)
    labels = torch.randint(0, 10, (230,))
    stored = make_loader((images, labels), "tensor", batch_size=32, shuffle=True, seed=3)
    floats = TensorLoader(to_float_images(images), labels, batch_size=32, shuffle=True, seed=3)
    assert stored.dataset.tensors[0].dtype == torch.uint8
    for epoch, start_batch in ((1, 0), (2, 0), (2, 4)):  # shuffled anew each epoch, and resumed mid-epoch
        stored.set_epoch(epoch, start_batch)
        floats.set_epoch(epoch, start_batch)
        pairs = list(zip(stored, floats, strict=True))
        assert len(pairs) == 8 - start_batch
        for (x, y), (expected_x, expected_y) in pairs:
            assert x.dtype == torch.float32 and x.shape[1:] == (1, 28, 28)
            assert torch.equal(x, expected_x) and torch.equal(y, expected_y)


def test_every_public_name_resolves_on_first_use():
    import fmnist_ignite

    assert sorted(fmnist_ignite.__all__) == sorted(fmnist_ignite._WHERE)
    for name in fmnist_ignite.__all__:
        assert getattr(fmnist_ignite, name) is getattr(
            __import__(f"fmnist_ignite.{fmnist_ignite._WHERE[name]}", fromlist=[name]), name
        )
    with pytest.raises(AttributeError, match="has no attribute 'nonsense'"):
        fmnist_ignite.nonsense  # noqa: B018
