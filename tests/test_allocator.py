"""A run keeps the memory a step frees for the next one (core/allocator.py) instead of faulting in fresh pages."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


def glibc() -> bool:
    """Whether this Python runs on glibc (musl and Pythons without the name raise; Windows has no confstr)."""
    try:
        return bool(os.confstr("CS_GNU_LIBC_VERSION"))
    except (AttributeError, ValueError, OSError):
        return False


# Twenty training steps of the CNN at batch 128, as a run takes them; the page faults of each. With glibc's
# defaults, a step's larger blocks go back to the kernel (munmap, or a trim of the heap's top) and their pages
# are faulted in again by the next step: thousands a step, on and off.
STEPS = """
import hashlib, json, resource, torch
from fmnist_ignite.config.recipes import recipe
from fmnist_ignite.core.allocator import keep_freed_memory
from fmnist_ignite.core.models import CNN
from fmnist_ignite.run.launch import setup_process
setup_process(recipe("tutorial", threads=1))
torch.manual_seed(0)
model = CNN(0.3)
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
images, labels = torch.rand(128, 1, 28, 28), torch.randint(0, 10, (128,))
faults = []
for _ in range(20):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    optimizer.zero_grad()
    torch.nn.functional.cross_entropy(model(images), labels).backward()
    optimizer.step()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
weights = hashlib.sha256(b"".join(t.contiguous().numpy().tobytes() for t in model.state_dict().values()))
print(json.dumps({"kept": keep_freed_memory(), "faults": faults, "weights": weights.hexdigest()}))
"""


def steps(**environ: str) -> dict:
    env = {**os.environ, **environ}
    done = subprocess.run([sys.executable, "-c", STEPS], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.slow  # two processes of their own
@pytest.mark.skipif(not glibc(), reason="malloc's thresholds are glibc's")
def test_a_run_s_process_s_steps_reuse_freed_blocks_where_glibc_would_fault_them_in_again():
    kept, default = steps(FMNIST_KEEP_FREED_MEMORY="1"), steps(FMNIST_KEEP_FREED_MEMORY="0")
    assert kept["kept"] is True and default["kept"] is False
    after_warm_up = sum(kept["faults"][4:]), sum(default["faults"][4:])
    assert after_warm_up[1] > 2000  # glibc's default: pages handed back and faulted in again, step after step
    assert after_warm_up[0] < after_warm_up[1] / 4, after_warm_up  # kept: the heap holds them for the next step
    assert kept["weights"] == default["weights"]  # where memory comes from changes no arithmetic


@pytest.mark.parametrize("missing", [AttributeError, ValueError, OSError], ids=["windows", "macos", "musl"])
def test_elsewhere_than_glibc_malloc_is_left_as_it_is(monkeypatch, missing):
    from fmnist_ignite.core import allocator

    monkeypatch.setattr(allocator, "_kept", None)
    monkeypatch.setattr(allocator.os, "confstr", lambda name: (_ for _ in ()).throw(missing(name)))
    assert allocator.keep_freed_memory(environ={}) is False
