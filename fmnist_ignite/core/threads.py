"""How many CPU threads a run's process uses: the cores that are its own, not every core the machine has.

torch's default is one thread per core of the machine. On a machine where other work runs (a shared login
node, a laptop, a cluster node given to several jobs), two OpenMP threads on a 2-core machine beside one
busy process made an epoch 10.7x slower than one thread (docs/speed.md): each step's threads wait at a
barrier for the one that the other process has pushed off its core. So a run counts the cores it may use
(its CPU affinity, SLURM's ``--cpus-per-task``, a container's CPU quota), shares them with the other
processes of the run on the machine, and leaves out the cores that other work keeps busy (measured over a
tenth of a second when the run starts). ``--threads`` and ``OMP_NUM_THREADS`` override the choice.

The wait policy stays OpenMP's default (spin briefly, then sleep): ``OMP_WAIT_POLICY=PASSIVE`` made the
default run 1.4x slower on an idle machine and helps little once the count is right. The number of threads
changes the float arithmetic, so a resumed run keeps the count of the run it continues (bitwise equal).
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

SAMPLE_S = 0.1  # how long the machine's other work is measured for, at the start of a run


@dataclass(frozen=True)
class ThreadPlan:
    """The threads chosen for this process, the cores it may use, and why, for the run's first line."""

    threads: int
    cores: int
    why: str

    def describe(self) -> str:
        """``CPU: 1 thread of 2 cores (other work keeps 1.0 core busy)``."""
        noun = "thread" if self.threads == 1 else "threads"
        return f"CPU: {self.threads} {noun} of {self.cores} core{'s' * (self.cores != 1)} ({self.why})"


def affinity() -> set[int]:
    """The CPUs this process may run on."""
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return set(range(os.cpu_count() or 1))


def usable_cores(environ: Mapping[str, str] = os.environ) -> int:
    """The cores this process may run on: its CPU affinity, within SLURM's ``--cpus-per-task`` and a cgroup's
    CPU quota (a container's), whichever is least."""
    limits = [len(affinity())]
    slurm = environ.get("SLURM_CPUS_PER_TASK", "")
    if slurm.isdigit() and int(slurm) > 0:
        limits.append(int(slurm))
    quota = _cgroup_quota()
    if quota is not None:
        limits.append(quota)
    return max(1, min(limits))


def _cgroup_quota() -> int | None:
    """The cores a cgroup v2 CPU quota (``cpu.max``) allows, rounded up; None where none is set."""
    try:
        with open("/sys/fs/cgroup/cpu.max") as stream:
            quota, period = stream.read().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max" or not quota.isdigit() or not period.isdigit() or int(period) == 0:
        return None
    return max(1, math.ceil(int(quota) / int(period)))


def busy_cores(seconds: float = SAMPLE_S, cpus: set[int] | None = None) -> float:
    """How many of ``cpus`` (this process's, by default) other work keeps busy now: their CPU time not idle
    over ``seconds`` (this process sleeps meanwhile), in cores; 0.0 where ``/proc/stat`` cannot be read."""
    cpus = affinity() if cpus is None else cpus
    first = _cpu_times(cpus)
    if first is None:
        return 0.0
    time.sleep(seconds)
    second = _cpu_times(cpus)
    if second is None:
        return 0.0
    total, idle = second[0] - first[0], second[1] - first[1]
    return max(0.0, len(cpus) * (total - idle) / total) if total > 0 else 0.0


def _cpu_times(cpus: set[int]) -> tuple[int, int] | None:
    """The total and idle CPU time of ``cpus`` so far, in clock ticks (their ``cpuN`` lines of ``/proc/stat``)."""
    total = idle = 0
    try:
        with open("/proc/stat") as stream:
            for line in stream:
                name, *values = line.split()
                if not name.startswith("cpu") or not name[3:].isdigit() or int(name[3:]) not in cpus:
                    continue
                fields = [int(value) for value in values[:8]]
                total, idle = total + sum(fields), idle + fields[3] + fields[4]  # idle and iowait
    except (OSError, ValueError, IndexError):
        return None
    return (total, idle) if total else None


def plan_threads(
    requested: int | None,
    processes: int = 1,
    kept: int | None = None,
    environ: Mapping[str, str] = os.environ,
    busy: float | None = None,
) -> ThreadPlan:
    """The threads for one of ``processes`` processes of a run on this machine. ``requested`` (``--threads``)
    wins; then ``kept``, the count of the run a resume continues; then ``OMP_NUM_THREADS``; else this process's
    share of the usable cores less those other work keeps busy (``busy``, measured when None), at least one."""
    cores = usable_cores(environ)
    if requested:
        return ThreadPlan(requested, cores, "--threads")
    if kept:
        return ThreadPlan(kept, cores, "as the run it continues, for an exactly equal resume")
    omp = environ.get("OMP_NUM_THREADS", "")
    if omp.isdigit() and int(omp) > 0:
        return ThreadPlan(int(omp), cores, "OMP_NUM_THREADS")
    share = max(1, cores // max(1, processes))
    if processes > 1:
        return ThreadPlan(share, cores, f"its share: {processes} processes of the run on this machine")
    if busy is None:  # measured on this process's CPUs, and counted in the share of them it may use
        mine = affinity()
        busy = busy_cores(cpus=mine) * cores / max(1, len(mine))
    free = max(1, min(share, round(cores - min(busy, cores))))
    if free < share:
        return ThreadPlan(free, cores, f"other work keeps {busy:.1f} core{'s' * (round(busy, 1) != 1)} busy")
    return ThreadPlan(share, cores, "the machine's other work leaves them free")


class _Applied(threading.local):
    plan: ThreadPlan | None = None


_applied = _Applied()


def apply_threads(plan: ThreadPlan) -> ThreadPlan:
    """Set torch's threads for this process to ``plan``'s; remember it for ``applied_threads``.

    torch keeps a count for each thread (OpenMP's and MKL's are per thread), but gives a thread, at its first
    computation, the count last set in any thread: reading the count first makes that happen now, so that a
    run in a thread keeps its own count when another thread beside it sets another.
    """
    import torch  # noqa: PLC0415 (the choice itself needs no torch)

    torch.get_num_threads()  # this thread's first: its count set now, not at its first computation
    torch.set_num_threads(plan.threads)
    _applied.plan = plan
    return plan


def applied_threads() -> ThreadPlan | None:
    """The plan this thread last applied (a run in a thread of its own has its own), or None when none was."""
    return _applied.plan
