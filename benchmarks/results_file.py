"""What every results file under ``benchmarks/results/`` holds besides its figures: the machine and the date.

The tables of ``docs/speed.md`` (and the README's speed block) are generated from these files by
``docs/gen_speed.py``; a benchmark writes its file with ``write_results``.
"""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path

import torch
from throughput import matmul_peak_gflops

from fmnist_ignite.core.device import cpu_model_name

RESULTS_DIR = Path(__file__).resolve().parent / "results"
HOLDING_VARIABLES = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")


def held_to_avx2() -> bool:
    """Whether this process's kernels are held to AVX2 (``ATEN_CPU_CAPABILITY=avx2``)."""
    return os.environ.get("ATEN_CPU_CAPABILITY", "").strip().lower() == "avx2"


def machine(peak_gflops: float | None = None) -> dict[str, object]:
    """The machine a figure was measured on: CPU model, torch's CPU capability (what its kernels use), the
    CPU's AVX512-BF16 and AMX, the variables that hold the kernels, cores, threads, torch, and the fp32 matmul
    peak (measured now unless given)."""
    peak = matmul_peak_gflops() if peak_gflops is None else peak_gflops
    return {
        "cpu": cpu_model_name(),
        "capability": torch.backends.cpu.get_cpu_capability(),
        "avx512_bf16": bool(torch.cpu._is_avx512_bf16_supported()),
        "amx": bool(torch.cpu._is_amx_tile_supported()),
        "held_to_avx2": held_to_avx2(),
        "environment": {name: os.environ[name] for name in HOLDING_VARIABLES if name in os.environ},
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__.split("+")[0],
        "fp32_matmul_peak_gflops": round(peak, 1),
    }


def write_results(name: str, data: dict[str, object], directory: Path = RESULTS_DIR) -> Path:
    """Write ``data`` (with today's date first) to ``directory/name`` as JSON; return the path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(json.dumps({"date": datetime.date.today().isoformat(), **data}, indent=1) + "\n")
    return path
