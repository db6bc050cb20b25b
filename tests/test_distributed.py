"""Data-parallel training with ignite.distributed: 2 CPU processes on gloo; the CUDA path when there is a GPU."""

from __future__ import annotations

import json

import ignite.distributed as idist
import numpy as np
import pytest
import torch
from helpers import free_port

from fmnist_ignite import Net, TensorLoader, Training, create_evaluator, get_data_loaders, train
from fmnist_ignite.run.launch import launch


def run_and_dump_weights(config):
    """Each process trains, then saves the weights it ended with (module level: spawned processes import it);
    rank 0 returns the run's summary."""
    with Training(config) as training:
        result = training.run()
    torch.save(result.model.state_dict(), f"{config.output_dir}/../rank{idist.get_rank()}.pt")
    return json.loads((result.output_dir / "summary.json").read_text()) if idist.get_rank() == 0 else None


@pytest.fixture
def two_process_config(small_config, tmp_path):
    # Last weights, not the best, so the check of identical weights looks at what training left.
    return small_config.replace(
        nproc_per_node=2,
        backend="gloo",
        epochs=2,
        batch_size=50,
        restore_best=False,
        threads=1,
        output_dir=str(tmp_path / "run" / "out"),
        master_port=free_port(),
    )


def test_two_gloo_processes_train_one_model_and_score_the_whole_validation_set(two_process_config, tmp_path):
    config = two_process_config
    summary = launch(config, run_and_dump_weights)
    assert summary["status"] == "completed" and summary["processes"] == 2 and summary["epochs_done"] == 2

    rank0 = torch.load(tmp_path / "run" / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "run" / "rank1.pt", weights_only=True)
    assert all(torch.equal(rank0[key], rank1[key]) for key in rank0)  # gradients were all-reduced

    out = tmp_path / "run" / "out"
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(
        [".lock", "config.json", "metrics.csv", "summary.json", "training_checkpoint_1.pt", "training_checkpoint_2.pt"]
        + ["test_predictions.npz", "calibration.json", "report.html"]  # written by rank 0 alone, once
        + [p.name for p in out.glob("best_model_*.pt")]
    )
    assert len(list(out.glob("best_model_*.pt"))) == 1
    assert len((out / "metrics.csv").read_text().splitlines()) == 3  # header and one row per epoch, once
    # The test predictions, gathered from both processes' shards, are in the test set's order.
    kept = np.load(out / "test_predictions.npz")
    test_labels = get_data_loaders(config.replace(nproc_per_node=1))["test"].dataset.tensors[1]
    assert kept["labels"].tolist() == test_labels.tolist()
    assert (kept["predicted"] == kept["labels"]).mean() == pytest.approx(summary["test"]["accuracy"])

    # The validation metrics of the last epoch equal a one-process evaluation of the final weights.
    model = Net()
    model.load_state_dict(rank0)
    single = create_evaluator(model).run(get_data_loaders(config.replace(nproc_per_node=1))["validation"]).metrics
    last = summary["history"][-1]
    assert last["val_accuracy"] == pytest.approx(single["accuracy"])
    assert last["val_loss"] == pytest.approx(single["loss"], rel=1e-5)
    assert summary["test"]["accuracy"] == pytest.approx(
        create_evaluator(model).run(get_data_loaders(config.replace(nproc_per_node=1))["test"]).metrics["accuracy"]
    )


def test_train_launches_the_processes_itself_and_reads_back_the_result(two_process_config):
    result = train(two_process_config.replace(master_port=free_port(), lr=0.05))
    assert result.epochs_run == 2 and 0.5 < result.test_metrics["accuracy"] <= 1.0
    assert result.last_checkpoint.name == "training_checkpoint_2.pt" and result.last_checkpoint.is_file()
    summary = json.loads((result.output_dir / "summary.json").read_text())
    assert summary["processes"] == 2 and len(result.history) == 2


def test_shards_cover_each_epoch_once_with_equal_lengths():
    images, labels = torch.zeros(103, 1, 28, 28), torch.arange(103)
    shards = [TensorLoader(images, labels, batch_size=10, shuffle=True, seed=1, rank=r, world_size=2) for r in (0, 1)]
    seen = [torch.cat([y for _, y in shard]) for shard in shards]
    assert len(seen[0]) == len(seen[1]) == 51 and len(shards[0]) == len(shards[1]) == 6
    assert set(seen[0].tolist()).isdisjoint(seen[1].tolist())
    evaluation = [TensorLoader(images, labels, batch_size=10, rank=r, world_size=2) for r in (0, 1)]
    together = sorted(torch.cat([y for shard in evaluation for _, y in shard]).tolist())
    assert together == list(range(103))  # evaluation shards cover every sample exactly once


def test_bad_distributed_settings_are_refused(small_config):
    from fmnist_ignite import FmnistError

    with pytest.raises(FmnistError, match="make it a multiple of the number of processes"):
        small_config.replace(nproc_per_node=2, batch_size=51).validate()
    with pytest.raises(FmnistError, match="loader='dataloader': data-parallel training shards the tensor loader"):
        small_config.replace(nproc_per_node=2, loader="dataloader").validate()
    with pytest.raises(FmnistError, match=r"node_rank=2: must be below nnodes"):
        small_config.replace(nnodes=2, node_rank=2).validate()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_training_keeps_data_and_model_on_the_gpu(small_config):
    training = Training(small_config.replace(device="cuda", epochs=2, lr=0.05))
    assert training.loaders["train"].dataset.tensors[0].device.type == "cuda"
    result = training.run()
    assert next(result.model.parameters()).device.type == "cuda"
    assert result.test_metrics["accuracy"] > 0.8


def poison_rank_1_at_iteration_3(trainer):
    """An extra handler: rank 1 alone gets a NaN batch at iteration 3 (module level: spawned processes import it)."""
    from ignite.engine import Events

    @trainer.on(Events.ITERATION_STARTED(once=3))
    def poison(engine):
        if idist.get_rank() == 1:
            images, targets = engine.state.batch
            engine.state.batch = (torch.full_like(images, float("nan")), targets)


def test_a_nan_in_one_process_stops_all_of_them_at_the_same_iteration_and_arrives_as_its_class(two_process_config):
    from fmnist_ignite import NonFiniteLoss

    config = two_process_config.replace(master_port=free_port(), peer_timeout=60)  # a regression fails, not hangs
    # The losses' sum is checked (one all-reduce) every NAN_CHECK_EVERY steps and at each epoch's last:
    # the NaN of iteration 3 stops both processes at iteration 10, the end of epoch 1, before its checkpoint.
    with pytest.raises(NonFiniteLoss, match="training stopped at epoch 1, iteration 10: the loss became nan"):
        train(config, extra_handlers=[poison_rank_1_at_iteration_3])


def test_a_tracked_data_parallel_run_is_one_mlflow_run_written_by_rank_0(two_process_config, monkeypatch):
    mlflow = pytest.importorskip("mlflow", reason="the mlflow extra is not installed")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    result = train(two_process_config.replace(master_port=free_port(), tracker="mlflow"))
    store = result.output_dir.resolve().parent / "mlflow.db"
    client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{store}")
    runs = [run for e in client.search_experiments() for run in client.search_runs([e.experiment_id])]
    assert len(runs) == 1  # not one per process
    logged = client.get_metric_history(runs[0].info.run_id, "val_accuracy")
    assert [m.step for m in logged] == [1, 2]
    assert [m.value for m in logged] == pytest.approx([row["val_accuracy"] for row in result.history])
