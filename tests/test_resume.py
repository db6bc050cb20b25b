"""Nothing lost: exact resume, signals, NaN, safe loading of checkpoints."""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import pytest
import torch
from conftest import without_times
from helpers import assert_same_weights, final_weights, signal_at
from ignite.engine import Events

from fmnist_ignite import FmnistError, Net, TrainingInterrupted, find_latest_checkpoint, train
from fmnist_ignite.cli.main import train_main as main
from fmnist_ignite.core import models


@pytest.fixture
def resumable_config(small_config):
    # Dropout makes the run draw from torch's RNG, early stopping makes its state matter: both must resume.
    # The one-cycle schedule and AdamW's moments are state too.
    return small_config.replace(
        epochs=4, dropout=0.2, lr=0.01, patience=2, monitor="accuracy", optimizer="adamw", scheduler="onecycle"
    )


@pytest.mark.parametrize("stop_at", [13, 10], ids=["mid-epoch", "between-epochs"])
def test_interrupted_and_resumed_run_ends_bitwise_equal_to_the_uninterrupted_one(resumable_config, tmp_path, stop_at):
    full = train(resumable_config.replace(output_dir=str(tmp_path / "full")))

    interrupted_config = resumable_config.replace(output_dir=str(tmp_path / "cut"))
    with pytest.raises(TrainingInterrupted) as info:
        train(interrupted_config, extra_handlers=[signal_at(stop_at)])
    assert info.value.exit_code == 130 and info.value.checkpoint.name == f"interrupted_checkpoint_{stop_at}.pt"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers are put back

    resumed = train(interrupted_config.replace(resume=str(info.value.checkpoint)))
    assert_same_weights(final_weights(resumed), final_weights(full))
    assert without_times(resumed.history) == without_times(full.history)
    assert (resumed.epochs_run, resumed.stopped_early) == (full.epochs_run, full.stopped_early)
    assert resumed.test_metrics == full.test_metrics
    # The resumed run went on deleting old epoch checkpoints: still only the last two are there.
    assert len(list((tmp_path / "cut").glob("training_checkpoint_*.pt"))) == 2


def test_a_checkpoint_saved_before_runs_had_their_own_generator_resumes_bitwise(resumable_config, tmp_path):
    # Such a checkpoint holds only torch's process-wide states: its CPU one is what dropout drew from then.
    full = train(resumable_config.replace(output_dir=str(tmp_path / "full")))
    cut = resumable_config.replace(output_dir=str(tmp_path / "cut"))
    with pytest.raises(TrainingInterrupted) as info:
        train(cut, extra_handlers=[signal_at(13)])
    checkpoint = torch.load(info.value.checkpoint, weights_only=True)
    checkpoint["random_state"] = {"cpu": checkpoint["random_state"].pop("generator")}
    torch.save(checkpoint, info.value.checkpoint)
    resumed = train(cut.replace(resume=str(info.value.checkpoint)))
    assert_same_weights(final_weights(resumed), final_weights(full))


def test_a_run_validating_every_third_epoch_validates_at_3_and_the_last_and_resumes_to_the_same_end(
    resumable_config, tmp_path
):
    config = resumable_config.replace(validate_every=3, epochs=5, patience=1)
    full = train(config.replace(output_dir=str(tmp_path / "full")))
    assert [row["epoch"] for row in full.history if "val_loss" in row] == [3, 5]
    assert full.epochs_run == 5 and full.best_checkpoint.name.startswith(("best_model_3_", "best_model_5_"))
    csv_rows = (tmp_path / "full" / "metrics.csv").read_text().splitlines()
    assert csv_rows[1].split(",")[2:4] == ["", ""] and csv_rows[3].split(",")[2] != ""  # epoch 1 empty, 3 not

    cut = config.replace(output_dir=str(tmp_path / "cut"))
    with pytest.raises(TrainingInterrupted) as info:
        train(cut, extra_handlers=[signal_at(13)])
    resumed = train(cut.replace(resume=str(info.value.checkpoint)))
    assert without_times(resumed.history) == without_times(full.history)
    assert_same_weights(final_weights(resumed), final_weights(full))


def test_a_cnn_run_saved_in_the_layout_before_2026_12_02_resumes_in_it_to_the_same_end(
    resumable_config, tmp_path, monkeypatch
):
    # A run begun before batch norm moved after the pooling: its checkpoints have the old layout's keys. The
    # resume, with today's code, puts the model (and its moving average) back in that layout and goes on.
    config = resumable_config.replace(model="cnn", epochs=2, ema=0.9)
    with monkeypatch.context() as before:
        before.setitem(models.MODELS, "cnn", lambda dropout: models.CNN(dropout, pool_first=False))
        full = train(config.replace(output_dir=str(tmp_path / "full")))
        cut = config.replace(output_dir=str(tmp_path / "cut"))
        with pytest.raises(TrainingInterrupted) as info:
            train(cut, extra_handlers=[signal_at(7)])
    assert "features.1.running_mean" in final_weights(full)
    resumed = train(cut.replace(resume=str(info.value.checkpoint)))
    assert_same_weights(final_weights(resumed), final_weights(full))
    assert resumed.test_metrics == full.test_metrics


def test_sigterm_saves_and_reports_exit_143(small_config):
    with pytest.raises(TrainingInterrupted) as info:
        train(small_config, extra_handlers=[signal_at(4, signal.SIGTERM)])
    assert info.value.exit_code == 143 and "interrupted by SIGTERM at epoch 1, iteration 4" in str(info.value)
    assert torch.load(info.value.checkpoint, weights_only=True)["trainer"]["iteration"] == 4


def test_resume_auto_picks_the_newest_checkpoint_and_says_so(small_config, said):
    first = train(small_config.replace(epochs=2))
    said.clear()
    resumed = train(small_config.replace(epochs=3, resume="auto"))
    assert said()[0] == f"Resuming from {first.last_checkpoint}"
    assert [row["epoch"] for row in resumed.history] == [1, 2, 3]
    assert sum(line.startswith("Epoch ") for line in said()) == 1  # only the extra epoch was trained


def test_resume_auto_with_nothing_to_resume_starts_fresh(small_config, said):
    result = train(small_config.replace(epochs=1, resume="auto"))
    assert said()[0] == f"No checkpoint in {small_config.output_dir}: starting fresh" and result.epochs_run == 1


def test_resume_with_fewer_epochs_than_done_is_refused(small_config):
    first = train(small_config.replace(epochs=2))
    with pytest.raises(FmnistError, match="is from epoch 2 of its run; epochs=1 is fewer: pass epochs=2 or more"):
        train(small_config.replace(epochs=1, resume=str(first.last_checkpoint)))


def test_find_latest_checkpoint_goes_by_the_state_not_the_file_times_and_ignores_foreign_files(small_config):
    """A copied run directory has new file times: the checkpoint furthest along is the one its trainer says."""
    result = train(small_config.replace(epochs=2))
    out = result.output_dir
    interrupted = out / "interrupted_checkpoint_3.pt"  # an earlier stop's, in epoch 1, superseded by epoch 2's
    shutil.copy(out / "training_checkpoint_1.pt", interrupted)
    os.utime(out / "training_checkpoint_2.pt", (1, 1))  # the oldest file time, as a copy may leave it
    for stray in (".training_checkpoint_3.pt.abcd1234.partial", "best_model_9_x.pt", "notes.txt"):
        (out / stray).write_bytes(b"newest but not a training checkpoint")
    (out / "training_checkpoint_7.pt").write_bytes(b"damaged")
    assert find_latest_checkpoint(out).name == "training_checkpoint_2.pt"


def nan_batch_at(iteration: int):
    """An extra handler: the batch of ``iteration`` becomes all NaN."""

    def attach(trainer):
        @trainer.on(Events.ITERATION_STARTED(once=iteration))
        def poison(engine):
            images, targets = engine.state.batch
            engine.state.batch = (torch.full_like(images, float("nan")), targets)

    return attach


def test_a_nan_mid_epoch_stops_the_run_before_the_epoch_ends_and_no_checkpoint_holds_it(small_config):
    # The losses are checked every NAN_CHECK_EVERY steps and at each epoch's last one: a NaN at iteration
    # 15 (epoch 2 of 10-iteration epochs) stops the run at iteration 20, before evaluation and checkpoint.
    iterations, evaluated = [], []

    def count(trainer):
        trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: iterations.append(e.state.iteration))
        trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: evaluated.append(e.state.epoch))

    with pytest.raises(
        FmnistError,
        match=r"epoch 2, iteration 20: the loss became nan at or before it .*good checkpoint is .*_checkpoint_1\.pt",
    ):
        train(small_config, extra_handlers=[nan_batch_at(15), count])
    assert iterations[-1] == 20 and evaluated == [1]  # no epoch-2 handlers ran
    saved = sorted(p.name for p in Path(small_config.output_dir).glob("*.pt"))
    assert saved == ["best_model_1_neg_val_loss=" + saved[0].split("=")[1], "training_checkpoint_1.pt"]
    for path in Path(small_config.output_dir).glob("*.pt"):
        weights = torch.load(path, weights_only=True)
        weights = weights.get("model", weights)
        assert all(torch.isfinite(t).all() for t in weights.values()), path
    assert not list(Path(small_config.output_dir).glob("interrupted_*"))


def test_a_nan_within_the_check_interval_is_caught_every_n_steps(small_config):
    from fmnist_ignite.handlers import epoch_stats as handlers

    iterations = []
    config = small_config.replace(epochs=1, val_size=0, batch_size=5, patience=0)  # 120 iterations an epoch
    with pytest.raises(FmnistError, match=f"iteration {handlers.NAN_CHECK_EVERY}: the loss became nan"):
        train(
            config,
            extra_handlers=[
                nan_batch_at(3),
                lambda t: t.add_event_handler(Events.ITERATION_COMPLETED, lambda e: iterations.append(1)),
            ],
        )
    assert len(iterations) == handlers.NAN_CHECK_EVERY


def test_a_stop_after_an_unchecked_nan_saves_no_checkpoint_and_says_nan(small_config):
    # The NaN at iteration 12 is not checked for until iteration 20; a signal at 13 stops the run first:
    # the losses are checked before the stop's checkpoint is written, so none is.
    with pytest.raises(FmnistError, match=r"iteration 13: the loss became nan at or before it"):
        train(small_config, extra_handlers=[nan_batch_at(12), signal_at(13)])
    assert not list(Path(small_config.output_dir).glob("interrupted_*"))
    assert not list(Path(small_config.output_dir).glob("training_checkpoint_2.pt"))


def test_a_signal_stops_within_one_batch_in_a_single_process(small_config):
    iterations = []
    with pytest.raises(TrainingInterrupted) as info:
        train(
            small_config,
            extra_handlers=[
                signal_at(13, signal.SIGTERM),
                lambda t: t.add_event_handler(Events.ITERATION_COMPLETED, lambda e: iterations.append(1)),
            ],
        )
    assert len(iterations) == 13 and info.value.checkpoint.name == "interrupted_checkpoint_13.pt"


def test_no_restore_best_scores_the_last_weights(small_config):
    result = train(small_config.replace(restore_best=False))
    assert result.scored_weights == "last (epoch 3)"
    assert result.best_checkpoint is not None


class RunsCodeOnLoad:
    """Unpickling this calls os.system: the classic malicious checkpoint."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def bad_checkpoints(tmp_path, good: Path) -> dict:
    """Files that must never be resumed from, each with the message it should give."""
    malicious = tmp_path / "malicious.pt"
    torch.save({"model": RunsCodeOnLoad(tmp_path / "pwned"), "optimizer": {}, "trainer": {}}, malicious)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    text = tmp_path / "notes.pt"
    text.write_text("these are my notes, not a checkpoint\n")
    weights_only = tmp_path / "weights.pt"
    torch.save(Net().state_dict(), weights_only)
    other_model = tmp_path / "other.pt"
    state = torch.load(good, weights_only=True)
    state["model"]["linear_relu_stack.0.weight"] = torch.zeros(256, 784)
    torch.save(state, other_model)
    return {
        malicious: "refused: it holds Python objects that would run code",
        truncated: "truncated or corrupt checkpoint",
        text: "not a checkpoint",
        weights_only: "not a training checkpoint (no model, optimizer, trainer)",
        other_model: "does not fit this model and configuration (Error(s) in loading state_dict",
        tmp_path / "missing.pt": "no such checkpoint file",
    }


def test_bad_checkpoints_are_refused_with_one_line_and_nothing_overwritten(small_config, tmp_path, capsys):
    good = train(small_config.replace(epochs=1)).last_checkpoint
    before = {path.name: path.read_bytes() for path in good.parent.iterdir()}
    for path, message in bad_checkpoints(tmp_path, good).items():
        # a checkpoint of another run goes into a directory of its own (into good's it is refused at once)
        out = tmp_path / "fresh" if path.name == "other.pt" else good.parent
        argv = ["--resume", str(path), "--output-dir", str(out), "--data-dir", small_config.data_dir]
        assert main(argv) == 2, path
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"error: {path}: ") and message in err, err
    assert not (tmp_path / "pwned").exists()  # the malicious file's code never ran
    assert {path.name: path.read_bytes() for path in good.parent.iterdir()} == before
    assert not list((tmp_path / "fresh").glob("*.pt"))


def test_a_one_cycle_run_cannot_be_stretched_on_resume(small_config):
    config = small_config.replace(optimizer="adamw", scheduler="onecycle", lr=0.01, epochs=2)
    first = train(config)
    saved = (first.output_dir / "config.json").read_bytes()
    with pytest.raises(FmnistError, match="planned for 2 epochs and cannot be stretched to 4: resume with epochs=2"):
        train(config.replace(epochs=4, resume=str(first.last_checkpoint)))
    assert (first.output_dir / "config.json").read_bytes() == saved  # a refused resume leaves the run as it was


class NanGradientNet(Net):
    """The MLP plus a parameter whose gradient turns NaN (sqrt's at 0, times 0) while the loss stays finite,
    once ``poisoned`` is set: the update, not the loss, makes the weights NaN."""

    def __init__(self):
        super().__init__()
        self.s = torch.nn.Parameter(torch.zeros(()))
        self.poisoned = False

    def forward(self, x):
        logits = super().forward(x)
        return logits + torch.sqrt(self.s * 0) if self.poisoned else logits


def test_a_finite_loss_with_a_nan_update_on_an_epoch_s_last_step_saves_no_nan_checkpoint(small_config):
    from fmnist_ignite import NonFiniteLoss

    model = NanGradientNet()

    def poison_the_last_step_of_epoch_1(trainer):
        trainer.add_event_handler(Events.ITERATION_STARTED(once=10), lambda e: setattr(model, "poisoned", True))

    with pytest.raises(NonFiniteLoss):
        train(
            small_config.replace(optimizer="sgd", momentum=0.0),
            model=model,
            extra_handlers=[poison_the_last_step_of_epoch_1],
        )
    assert torch.isnan(model.s).item()  # the update did make the weights NaN, with a finite loss
    for path in Path(small_config.output_dir).glob("*.pt"):
        saved = torch.load(path, weights_only=True)
        weights = saved.get("model", saved)
        assert all(torch.isfinite(value).all() for value in weights.values()), path.name
