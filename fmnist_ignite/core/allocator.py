"""Keep the memory a training step frees for the next step, instead of handing it back to the kernel.

glibc's malloc serves large blocks (a batch's activations: 6.4 MB for the CNN's first layer at batch 128)
with ``mmap`` and, once freed, gives them back to the kernel (``munmap``, or a trim of the heap's top), so
the next step's pages are faulted in and zeroed again (thousands of page faults a CNN step, where torch's
profiler shows ``fill_`` writing fresh pages). Raising malloc's mmap threshold (to 32 MiB, the upper limit
mallopt(3) documents for 64-bit systems) and its trim threshold keeps the freed blocks in the heap, where
the next step reuses them: a shorter step (docs/speed.md). The arithmetic is the same, so results are
bitwise unchanged; the cost is that the process keeps, until it exits, up to the most
memory it once held. This is what PyTorch's CPU tuning guide gets with jemalloc or tcmalloc, without a
preloaded library.

A run applies it to its process; ``FMNIST_KEEP_FREED_MEMORY=0`` turns it off. Elsewhere than glibc (macOS,
musl, Windows) it does nothing.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Mapping

MMAP_THRESHOLD = 32 << 20
"""Blocks up to this size come from the heap and are reused: mallopt(3)'s documented limit on 64-bit systems."""
TRIM_THRESHOLD = (1 << 31) - 1
"""Free memory at the heap's top is given back to the kernel only beyond this (the largest a C int holds)."""
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's <malloc.h>

_kept: bool | None = None


def keep_freed_memory(environ: Mapping[str, str] = os.environ) -> bool:
    """Set glibc malloc's thresholds so that freed blocks stay in the process (once a process; later calls
    say what the first did).

    Args:
        environ: where ``FMNIST_KEEP_FREED_MEMORY`` is read; ``0`` (or ``false``, ``no``, ``off``) leaves
            malloc as it is; unset, or any other value, sets the thresholds.

    Returns:
        True when glibc's ``mallopt`` took both thresholds (with jemalloc or tcmalloc preloaded, it may answer
        for them); False when turned off, without glibc, or where it refused either (when it took the first
        but not the second, the first stays set).
    """
    global _kept
    if _kept is None:
        _kept = environ.get("FMNIST_KEEP_FREED_MEMORY", "").strip().lower() not in {"0", "false", "no", "off"}
        _kept = _kept and _set_thresholds()
    return _kept


def _set_thresholds() -> bool:
    """glibc's ``mallopt`` for both thresholds; False where there is no glibc or it refuses either."""
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):
            return False
        mallopt = ctypes.CDLL(None).mallopt  # the process's own symbols: glibc's
    except (AttributeError, ValueError, OSError):  # no confstr (Windows), no such name (macOS), no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
