"""The threads a run uses (core/threads.py): the cores that are its own, not every core the machine has."""

from __future__ import annotations

import json

import pytest
from helpers import QUIET

from fmnist_ignite import train
from fmnist_ignite.core import threads as threads_module
from fmnist_ignite.core.threads import ThreadPlan, busy_cores, plan_threads, usable_cores


@pytest.fixture
def cores(monkeypatch):
    """Pretend the machine has ``n`` cores, all this process's (``os.sched_getaffinity``), no cgroup quota."""

    def set_cores(n: int) -> None:
        monkeypatch.setattr(threads_module.os, "sched_getaffinity", lambda pid: set(range(n)))
        monkeypatch.setattr(threads_module, "_cgroup_quota", lambda: None)

    return set_cores


def test_an_idle_machine_gives_a_run_every_core_it_may_use(cores):
    cores(8)
    assert plan_threads(None, environ={}, busy=0.2) == ThreadPlan(8, 8, "the machine's other work leaves them free")


def test_cores_other_work_keeps_busy_are_left_to_it_but_one_thread_always_remains(cores):
    cores(2)
    assert plan_threads(None, environ={}, busy=1.0).threads == 1  # beside one busy process: 10.7x faster than 2
    assert plan_threads(None, environ={}, busy=7.5).threads == 1
    cores(16)
    plan = plan_threads(None, environ={}, busy=5.6)
    assert plan.threads == 10 and plan.describe() == "CPU: 10 threads of 16 cores (other work keeps 5.6 cores busy)"


def test_slurm_s_cpus_per_task_and_the_run_s_processes_share_the_cores(cores):
    cores(32)
    assert plan_threads(None, environ={"SLURM_CPUS_PER_TASK": "4"}, busy=0.0).threads == 4
    assert usable_cores({"SLURM_CPUS_PER_TASK": "4"}) == 4
    assert plan_threads(None, processes=4, environ={}, busy=0.0) == ThreadPlan(
        8, 32, "its share: 4 processes of the run on this machine"
    )


def test_the_flag_the_kept_count_and_omp_num_threads_come_before_the_measure(cores):
    cores(8)
    assert plan_threads(3, kept=5, environ={"OMP_NUM_THREADS": "2"}, busy=7.0) == ThreadPlan(3, 8, "--threads")
    assert plan_threads(None, kept=5, environ={"OMP_NUM_THREADS": "2"}, busy=7.0).threads == 5
    assert plan_threads(None, environ={"OMP_NUM_THREADS": "2"}, busy=7.0) == ThreadPlan(2, 8, "OMP_NUM_THREADS")


@pytest.mark.slow  # a subprocess
def test_the_busy_measure_sees_a_busy_core():
    import multiprocessing

    burner = multiprocessing.get_context("spawn").Process(target=_burn, daemon=True)
    burner.start()
    try:
        import time

        time.sleep(0.5)  # started and spinning
        assert busy_cores(0.5) >= 0.7
    finally:
        burner.kill()


def _burn() -> None:
    while True:
        pass


def test_a_resumed_run_computes_with_the_thread_count_of_the_run_it_continues(small_config):
    first = train(small_config.replace(epochs=1, threads=2), **QUIET)
    lines = []
    train(small_config.replace(epochs=2, threads=None, resume="auto"), log=lines.append)
    assert any(
        line.startswith("CPU: 2 threads of ") and line.endswith("for an exactly equal resume)") for line in lines
    )
    summary = json.loads((first.output_dir / "summary.json").read_text())
    assert summary["threads"] == 2
