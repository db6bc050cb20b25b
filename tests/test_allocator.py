"""A run keeps the memory a step frees for the next one (core/allocator.py) instead of faulting in fresh pages."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

GLIBC = bool(getattr(os, "confstr", lambda name: None)("CS_GNU_LIBC_VERSION")) if sys.platform == "linux" else False

# Eight 4 MiB tensors written and freed at once, ten times, as a step's activations are; the page faults of each
# round. glibc by default hands the freed 32 MiB back to the kernel (its trim threshold is twice the largest
# block) and faults in every page again.
ROUNDS = """
import json, resource, sys, torch
from fmnist_ignite.config.recipes import recipe
from fmnist_ignite.core.allocator import keep_freed_memory
from fmnist_ignite.run.launch import setup_process
setup_process(recipe("tutorial", threads=1))
faults = []
for _ in range(10):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    tensors = [torch.empty(1 << 20).fill_(1.0) for _ in range(8)]
    del tensors
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"kept": keep_freed_memory(), "faults": faults}))
"""


def rounds(**environ: str) -> dict:
    env = {**os.environ, **environ}
    done = subprocess.run([sys.executable, "-c", ROUNDS], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.skipif(not GLIBC, reason="malloc's thresholds are glibc's")
def test_a_run_s_process_reuses_freed_blocks_where_glibc_would_fault_them_in_again():
    kept, default = rounds(), rounds(FMNIST_KEEP_FREED_MEMORY="0")
    assert kept["kept"] is True and default["kept"] is False
    pages = 8 * (4 << 20) // os.sysconf("SC_PAGE_SIZE")
    assert sum(default["faults"][5:]) > 5 * pages // 2  # glibc's default: the pages come back every round
    assert sum(kept["faults"][5:]) < pages // 10  # kept: once the heap holds them, next to no faults


def test_elsewhere_than_glibc_malloc_is_left_as_it_is(monkeypatch):
    from fmnist_ignite.core import allocator

    monkeypatch.setattr(allocator, "_kept", None)
    monkeypatch.setattr(allocator.os, "confstr", lambda name: (_ for _ in ()).throw(ValueError(name)))
    assert allocator.keep_freed_memory(environ={}) is False
