"""Where and how precisely a run computes: the device, the CPU's capability, and bf16 or fp32."""

from __future__ import annotations

import platform
from contextlib import suppress

import torch

from fmnist_ignite.config.fields import named
from fmnist_ignite.config.settings import Config
from fmnist_ignite.errors import FmnistError


def resolve_device(name: str = "auto") -> torch.device:
    """The device a run computes on, from its name.

    Args:
        name: "auto" (the default): CUDA when present, else CPU; any other name as ``torch.device`` takes it
            ("cpu", "cuda", "cuda:1", ...).

    Raises:
        FmnistError: "cuda" without CUDA: an error, not a silent fallback.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise FmnistError(
            "{cuda} asked for, but torch sees no CUDA device: use {cpu} or {auto}",
            cuda=named(Config, "device", "cuda"),
            cpu=named(Config, "device", "cpu"),
            auto=named(Config, "device", "auto"),
        )
    return torch.device(name)


def cpu_capability() -> str:
    """torch's CPU capability (``DEFAULT``, ``AVX2``, ``AVX512``, ...), with ``AVX512-BF16`` and ``AMX``
    added when the CPU has them: the names figures and precision choices are given with."""
    extras = [("AVX512-BF16", torch.cpu._is_avx512_bf16_supported()), ("AMX", torch.cpu._is_amx_tile_supported())]
    return " ".join([torch.backends.cpu.get_cpu_capability(), *(name for name, present in extras if present)])


def cpu_model_name() -> str:
    """The CPU's model name as ``/proc/cpuinfo`` gives it ("AMD EPYC", "Intel(R) Xeon(R) ..."), else what
    ``platform`` knows, else "unknown CPU"."""
    with suppress(OSError, UnicodeDecodeError), open("/proc/cpuinfo", encoding="utf-8") as info:
        for line in info:
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def bf16_hardware(device: torch.device | str) -> tuple[bool, str]:
    """Whether ``device`` computes bf16 natively, and the hardware in words ("this AVX512 AVX512-BF16 CPU",
    "this GPU (NVIDIA H100 80GB HBM3)"): a CUDA GPU with bf16, or a CPU with AVX512-BF16 or AMX whose AVX-512
    kernels torch runs (``ATEN_CPU_CAPABILITY`` may hold them to AVX2, where bf16 is emulated)."""
    if torch.device(device).type == "cuda":
        native = torch.cuda.is_bf16_supported(including_emulation=False)
        return native, f"this GPU ({torch.cuda.get_device_name(device)})"
    capability = cpu_capability()
    kernels = capability.split()[0]  # the instructions torch's kernels use (ATEN_CPU_CAPABILITY may hold them)
    flags = "AVX512-BF16" in capability or "AMX" in capability
    native = flags and kernels.startswith("AVX512")
    if flags and not native:
        return False, f"this {capability} CPU held to torch's {kernels} kernels (ATEN_CPU_CAPABILITY)"
    return native, f"this {capability} CPU"


def choose_precision(requested: str, device: torch.device | str) -> tuple[str, str]:
    """The precision to run ("fp32" or "bf16") and why, in words, from the hardware alone.

    "auto" takes bf16 only where the device computes it natively (``bf16_hardware``); elsewhere bf16 autocast
    is emulated and slower than fp32 (6.5x for a Linear(784, 512) on an AVX2 CPU; a whole run 7x on an AMX
    CPU held to AVX2). Native is what is possible, not what is faster: a run measures its own step where bf16
    is native (``core.precision.run_precision``); this is what it starts from, and what scoring a saved model
    without its run uses.
    """
    native, hardware = bf16_hardware(device)
    has = f"{hardware} {'computes bf16 natively' if native else 'has no native bf16'}"
    if requested == "auto":
        return ("bf16" if native else "fp32"), f"auto: {has}"
    if requested == "bf16" and not native:
        return "bf16", f"asked for, but {has}: bf16 autocast will be slower than fp32 here"
    return requested, "asked for"


def out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` says memory ran out: Python's ``MemoryError``, torch's on a GPU, or its CPU allocator's."""
    if isinstance(exc, (MemoryError, torch.OutOfMemoryError)):
        return True
    return isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc)
