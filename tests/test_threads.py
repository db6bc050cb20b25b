"""The threads a run uses (core/threads.py): the cores that are its own, not every core the machine has; and
runs in Python threads of one process, each with its own thread count and random generators."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from helpers import assert_same_weights, final_weights
from ignite.engine import Engine, Events

from fmnist_ignite import train
from fmnist_ignite.core import threads as threads_module
from fmnist_ignite.core.threads import (
    ThreadPlan,
    applied_threads,
    apply_threads,
    busy_cores,
    plan_threads,
    usable_cores,
)


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


def test_a_resumed_run_computes_with_the_thread_count_of_the_run_it_continues(small_config, said):
    first = train(small_config.replace(epochs=1, threads=2))
    train(small_config.replace(epochs=2, threads=None, resume="auto"))
    assert any(
        line.startswith("CPU: 2 threads of ") and line.endswith("for an exactly equal resume)") for line in said()
    )
    summary = json.loads((first.output_dir / "summary.json").read_text())
    assert summary["threads"] == 2


def test_a_thread_keeps_the_count_it_applied_when_another_thread_applies_another_before_it_computes():
    # torch gives a thread, at its first computation, the count last set in any thread: unless asked for at once.
    applied, other_applied, seen = threading.Event(), threading.Event(), {}

    def run() -> None:
        apply_threads(ThreadPlan(1, 2, "this run's"))
        applied.set()
        other_applied.wait(timeout=30)
        x = torch.ones(64, 64)
        x @ x  # the thread's first computation
        seen["threads"], seen["plan"] = torch.get_num_threads(), applied_threads()

    def other_run() -> None:
        applied.wait(timeout=30)
        seen["other"] = apply_threads(ThreadPlan(2, 2, "another run's"))
        other_applied.set()

    workers = [threading.Thread(target=run), threading.Thread(target=other_run)]
    try:
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=30)
    finally:
        torch.set_num_threads(1)  # conftest's, which threads started later begin with
    assert seen == {"threads": 1, "plan": ThreadPlan(1, 2, "this run's"), "other": ThreadPlan(2, 2, "another run's")}
    assert applied_threads() != ThreadPlan(2, 2, "another run's")  # this thread's is its own


def test_two_runs_in_threads_at_once_each_end_bitwise_equal_to_the_same_run_alone(small_config, tmp_path):
    # Each run owns its generators (initialisation, data order, augmentation, dropout) and its thread count.
    base = small_config.replace(epochs=2, dropout=0.3, hflip=True, shift=2)
    configs = [base.replace(seed=seed, threads=seed + 1) for seed in (0, 1)]
    alone = [train(config.replace(output_dir=str(tmp_path / f"alone-{config.seed}"))) for config in configs]
    step = threading.Barrier(2, timeout=60)  # the two take each step together: their draws interleave

    def in_step(trainer: Engine) -> None:
        trainer.add_event_handler(Events.ITERATION_STARTED, lambda engine: step.wait())

    together = [config.replace(output_dir=str(tmp_path / f"beside-{config.seed}")) for config in configs]
    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(train, config, extra_handlers=[in_step]) for config in together]
        beside = [future.result(timeout=300) for future in futures]
    for run_alone, run_beside in zip(alone, beside, strict=True):
        assert_same_weights(final_weights(run_beside), final_weights(run_alone))
        assert run_beside.test_metrics == run_alone.test_metrics
    assert not torch.equal(
        final_weights(alone[0])["linear_relu_stack.0.weight"], final_weights(alone[1])["linear_relu_stack.0.weight"]
    )
