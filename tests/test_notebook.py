"""In a Jupyter notebook: the display is detected (and can be forced), a run shows one live view updated in
place, results show themselves, mistakes can be looked at, the example notebook runs in a real kernel, and
the kernel's stop button checkpoints a run that a later cell resumes, leaking nothing."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time
import types
from html import unescape
from pathlib import Path

import pytest
import torch
from conftest import small_config_file, write_synthetic
from helpers import ROOT, scripted_evaluator
from ignite.engine import Engine
from PIL import Image

from fmnist_ignite import (
    CLASS_NAMES,
    Config,
    FmnistError,
    Interpretation,
    attach_early_stopping,
    attach_evaluation,
    attach_notebook_view,
    choose_display,
    interpret,
    most_confused,
    train,
)
from fmnist_ignite.cli.main import main
from fmnist_ignite.cli.parser import build_parser, config_from_args
from fmnist_ignite.data import fashion_mnist as data_module
from fmnist_ignite.experiments.lr_finder import LRFinderResult
from fmnist_ignite.files.summary import RunStatus, RunSummary
from fmnist_ignite.handlers import notebook as notebook_module

EXAMPLE = ROOT / "examples" / "tutorial.ipynb"


class Recorder:
    """Stands in for a notebook's output area: keeps every bundle the view showed."""

    def __init__(self) -> None:
        self.bundles: list[dict] = []

    def show(self, bundle: dict) -> None:
        self.bundles.append(bundle)


# ---------------------------------------------------------------------------------------------- detection


def fake_shell(monkeypatch, name="ZMQInteractiveShell", module="ipykernel.zmqshell", apps=("IPKernelApp",)):
    """Make this process look like IPython with the given shell (and ipykernel loaded)."""
    shell = type(name, (), {"__module__": module})()
    shell.config = {app: {} for app in apps}
    ipython = types.ModuleType("IPython")
    ipython.get_ipython = lambda: shell
    monkeypatch.setitem(sys.modules, "IPython", ipython)
    monkeypatch.setitem(sys.modules, "ipykernel", types.ModuleType("ipykernel"))
    monkeypatch.delenv("SPY_PYTHONPATH", raising=False)


class Stream:
    def __init__(self, tty: bool | None):
        self.tty = tty

    def isatty(self) -> bool:
        if self.tty is None:
            raise ValueError("I/O operation on closed file")
        return self.tty


def test_auto_picks_the_notebook_view_only_in_a_jupyter_kernel(monkeypatch):
    fake_shell(monkeypatch)
    assert choose_display("auto", Stream(False)) == "notebook"
    fake_shell(monkeypatch, apps=())  # IPython in a console, not a kernel
    assert choose_display("auto", Stream(False)) == "plain"
    fake_shell(monkeypatch, name="TerminalInteractiveShell", module="IPython.terminal.interactiveshell")
    assert choose_display("auto", Stream(True)) == "terminal"
    fake_shell(monkeypatch, name="SpyderShell", module="spyder_kernels.console.shell")
    assert choose_display("auto", Stream(False)) == "plain"


def test_auto_off_a_kernel_is_terminal_on_a_tty_else_plain_and_an_override_is_honoured(monkeypatch):
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    assert choose_display("auto", Stream(True)) == "terminal"
    assert choose_display("auto", Stream(False)) == "plain"
    assert choose_display("auto", Stream(None)) == "plain"  # a closed stream
    fake_shell(monkeypatch)
    assert [choose_display(s, Stream(True)) for s in ("plain", "terminal", "notebook")] == [
        "plain",
        "terminal",
        "notebook",
    ]


def test_display_is_a_setting_with_a_flag_a_checked_value_and_may_change_on_resume(tmp_path):
    from fmnist_ignite.config.files import read_config_file
    from fmnist_ignite.config.settings import settings

    assert config_from_args(build_parser().parse_args(["--display", "plain"])).display == "plain"
    assert Config().display == "auto" and settings()["display"].on_resume and not settings()["display"].tunable
    with pytest.raises(FmnistError, match="display='fancy': choose one of auto, notebook, terminal, plain"):
        Config(display="fancy").validate()
    path = tmp_path / "run.yaml"
    path.write_text("display: fancy\n")
    with pytest.raises(FmnistError, match=r"run.yaml: display='fancy': choose one of"):
        read_config_file(path)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--display", "fancy"])


@pytest.mark.slow  # a subprocess
def test_a_slurm_style_log_gets_the_text_lines_and_no_bar(tmp_path):
    """stdout and stderr to one file, as sbatch does: text lines only, not one carriage return."""
    log = tmp_path / "slurm-1.out"
    config = small_config_file(tmp_path, epochs=1, log_interval=2, plots=False)
    with log.open("w") as out:
        done = subprocess.run(
            [
                sys.executable,
                str(ROOT / "examples" / "run.py"),
                "--config",
                str(config),
                "--output-dir",
                str(tmp_path / "run"),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "SLURM_JOB_ID": "1", "OMP_NUM_THREADS": "1"},
            timeout=300,
            check=False,
        )
    text = log.read_text()
    assert done.returncode == 0, text
    assert "Epoch 1\n" in text and text.count("\nloss: ") == 5 and "Test, best (epoch 1) weights" in text
    assert "\r" not in text and "it/s" not in text and "<div" not in text


def test_display_terminal_forces_the_bar_off_a_terminal(small_config, capsys):
    train(small_config.replace(epochs=1, display="terminal", progress=True))
    captured = capsys.readouterr()
    assert "\r" in captured.err and "Epoch 1" in captured.out  # tqdm's bar, and the lines around it
    train(small_config.replace(epochs=1, display="auto", progress=True, output_dir=small_config.output_dir + "-2"))
    captured = capsys.readouterr()
    assert "\r" not in captured.err + captured.out and "Epoch 1" in captured.out


# --------------------------------------------------------------------------------------------- the live view


def scripted_run(losses, max_epochs, patience=None, min_interval=0.5):
    """A trainer of 50 do-nothing batches an epoch whose evaluator reports ``losses``, with a view on a Recorder."""
    trainer = Engine(lambda engine, batch: torch.tensor(0.5))
    evaluator = scripted_evaluator(losses)
    history = attach_evaluation(trainer, evaluator, [0])
    if patience:
        attach_early_stopping(trainer, evaluator, patience)
    output = Recorder()
    view = attach_notebook_view(trainer, history, min_interval=min_interval, output=output)
    trainer.run(range(50), max_epochs=max_epochs)
    return view, output


def test_the_view_is_redrawn_in_place_at_most_every_interval_and_at_each_epoch():
    view, output = scripted_run([0.9, 0.8, 0.7], 3, min_interval=3600)
    assert len(output.bundles) == 1 + 3 + 1  # started, each epoch, completed: never per batch
    html = output.bundles[-1]["text/html"]
    assert (
        html.count("<tr") == 1 + 3
        and "<th>validation loss</th>" in html
        and '<td style="text-align:right">0.7000' in html
    )
    assert "Done: 3 epochs" in html and '<progress value="150" max="150"' in html
    view, output = scripted_run([0.9, 0.8, 0.7], 3, min_interval=0)
    assert len(output.bundles) > 150  # unthrottled: every batch


def test_a_view_composed_as_the_docs_say_fills_every_column_and_one_without_says_what_adds_them():
    def composed(with_optimizer: bool) -> str:
        model = torch.nn.Linear(2, 2)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        trainer = Engine(lambda engine, batch: torch.tensor(0.5))
        evaluator = scripted_evaluator([0.9, 0.8])
        history = attach_evaluation(trainer, evaluator, [0])
        output = Recorder()
        view = attach_notebook_view(
            trainer, history, evaluator, optimizer=optimizer if with_optimizer else None, output=output
        )
        trainer.run(range(5), max_epochs=2)
        view.close()
        return output.bundles[-1]["text/html"]

    full, partial = composed(True), composed(False)
    for heading in ("train loss", "validation loss", "learning rate", "time"):
        assert f"<th>{heading}</th>" in full
    assert "attach_epoch_stats" not in full and '<td style="text-align:right"></td>' not in full
    assert "<th>train loss</th>" not in partial and "<th>validation loss</th>" in partial  # no empty column
    assert "train loss, learning rate, time: attach_epoch_stats(trainer, history, optimizer) adds them" in partial


def test_an_early_stop_ends_the_view_full_and_calm_and_the_end_shows_the_test_block():
    view, output = scripted_run([0.5, 0.6, 0.7, 0.8, 0.9], 5, patience=2, min_interval=3600)
    assert "Stopped at epoch 3 of 5" in output.bundles[-1]["text/html"]
    view.close(
        RunSummary(
            status=RunStatus.COMPLETED,
            stopped_early=True,
            epochs_done=3,
            wall_time_s=2.0,
            scored_weights="best (epoch 1)",
            test={"accuracy": 0.871, "loss": 0.3512, "per_class_accuracy": {"Shirt": 0.6, "Trouser": 0.97}},
            checkpoints={"last": "/r/training_checkpoint_3.pt", "best": "/r/best_model_1_neg_val_loss=-0.5.pt"},
            output_dir="/r",
        )
    )
    html = output.bundles[-1]["text/html"]
    assert "Done: stopped early after epoch 3" in html and '<progress value="250" max="250"' in html
    words = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]*", "", html)  # an image's base64 may spell anything
    assert "red" not in words and "danger" not in words  # a stop that was meant is no failure
    assert "Test, best (epoch 1) weights: accuracy 87.1%, loss 0.3512" in html
    assert html.index("Shirt") < html.index("Trouser") and "training_checkpoint_3.pt" in html
    assert "accuracy 87.1%" in output.bundles[-1]["text/plain"]


def test_train_in_notebook_mode_shows_one_view_keeps_the_lines_off_it_and_folds_them_at_the_end(
    small_config, monkeypatch, capsys
):
    outputs = []
    monkeypatch.setattr(notebook_module, "JupyterOutput", lambda: outputs.append(Recorder()) or outputs[-1])
    result = train(small_config.replace(display="notebook", epochs=2, plots=False))
    assert len(outputs) == 1 and capsys.readouterr().out == ""  # one output area; nothing printed
    html = outputs[0].bundles[-1]["text/html"]
    assert html.count("<tr") == (1 + 2) + (1 + 10) and "data:image/png;base64," in html  # epochs, per-class, curves
    assert f"accuracy {result.test_metrics['accuracy']:.1%}" in html and "Done: 2 epochs" in html
    assert "Text log (" in html and html.count("display:list-item") == 2 and "loss: " in html.split("Text log")[1]
    assert "loss: " not in outputs[0].bundles[1]["text/html"]  # not on the live view


def test_a_resumed_run_s_view_says_from_where_while_it_runs_and_at_the_end(small_config, monkeypatch):
    outputs = []
    monkeypatch.setattr(notebook_module, "JupyterOutput", lambda: outputs.append(Recorder()) or outputs[-1])
    config = small_config.replace(display="notebook", plots=False)
    train(config.replace(epochs=1))
    train(config.replace(epochs=2, resume="auto"))
    live, last = outputs[-1].bundles[1]["text/html"], outputs[-1].bundles[-1]["text/html"]
    assert "resumed from training_checkpoint_1.pt (iteration " in live
    assert re.search(r"Done: 2 epochs in [0-9:]+, resumed from training_checkpoint_1\.pt", last), last[:300]


# ------------------------------------------------------------------------------------- looking at mistakes


class Lookup(torch.nn.Module):
    """Predicts the class written in pixel (0, 0), as surely as pixel (0, 1) says (a logit margin of value / 50)."""

    def __init__(self):
        super().__init__()
        self.unused = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x):
        pixels = (x[:, 0, 0, :2] * 255).round()
        logits = torch.zeros(len(x), 10)
        logits[torch.arange(len(x)), pixels[:, 0].long()] = pixels[:, 1] / 50
        return logits + self.unused


def crafted():
    """30 right and 9 wrong: Shirt taken for T-shirt/top 5 times, Pullover for Coat 3, Sneaker for Sandal 1."""
    cases = [(c, c, 100) for c in range(10) for _ in range(3)]  # (true, predicted, sureness)
    cases += [(6, 0, s) for s in (200, 120, 90, 60, 30)] + [(2, 4, s) for s in (250, 110, 40)] + [(7, 5, 150)]
    images = torch.randint(0, 50, (len(cases), 28, 28), generator=torch.Generator().manual_seed(0)).to(torch.uint8)
    for i, (_, predicted, sure) in enumerate(cases):
        images[i, 0, 0], images[i, 0, 1] = predicted, sure
    return images, torch.tensor([true for true, _, _ in cases]), cases


def test_most_confused_and_top_losses_find_the_known_mistakes():
    images, labels, cases = crafted()
    found = Interpretation.from_model(Lookup(), images, labels, batch_size=7)
    assert found.accuracy == pytest.approx(30 / 39)
    assert found.most_confused(2) == [("Shirt", "T-shirt/top", 5), ("Pullover", "Coat", 3)]
    assert found.most_confused(5, min_count=2) == [("Shirt", "T-shirt/top", 5), ("Pullover", "Coat", 3)]
    assert most_confused(found.confusion, 3)[2] == ("Sneaker", "Sandal", 1)
    top = found.top_losses(4)
    assert [t.index for t in top] == [35, 30, 38, 31]  # surest wrong first: 250, 200, 150, 120
    assert [(t.true, t.predicted) for t in top] == [
        ("Pullover", "Coat"),
        ("Shirt", "T-shirt/top"),
        ("Sneaker", "Sandal"),
        ("Shirt", "T-shirt/top"),
    ]
    assert top[0].probability == pytest.approx(math.exp(5) / (math.exp(5) + 9), rel=1e-5)
    fig = found.plot_top_losses(4)
    axes = [ax for ax in fig.axes if ax.images]
    assert len(axes) == 4
    assert axes[0].get_title() == f"true: Pullover\npredicted: Coat\n{top[0].probability:.1%}"
    for ax, t in zip(axes, top, strict=False):
        assert torch.equal(torch.as_tensor(ax.images[0].get_array().data), images[t.index])
    assert fig._repr_png_().startswith(b"\x89PNG")  # shown inline by Jupyter


def test_a_train_result_plots_and_looks_at_its_mistakes_as_a_saved_checkpoint_does(
    small_config, tmp_path, monkeypatch, capsys
):
    result = train(small_config.replace(epochs=1))  # one epoch at lr 1e-3: many mistakes
    assert "<b>TrainResult</b>" in result._repr_html_()
    assert f"accuracy {result.test_metrics['accuracy']:.1%}" in result._repr_html_()
    assert result.best_checkpoint.name in result._repr_html_()
    assert len(result.plot_curves().axes) == 2 and result.plot_confusion().axes[0].images
    confused = result.most_confused(3)
    off_diagonal = sorted(
        (int(result.confusion[i, j]) for i in range(10) for j in range(10) if i != j and result.confusion[i, j]),
        reverse=True,
    )
    assert [c.count for c in confused] == off_diagonal[:3]  # the largest confusions, counted here by hand
    assert all(CLASS_NAMES.index(c.true) != CLASS_NAMES.index(c.predicted) for c in confused)
    assert len([ax for ax in result.plot_top_losses(4).axes if ax.images]) == 4
    saved = interpret(result.best_checkpoint, small_config.data_dir, "cpu", verify=False)
    assert torch.equal(saved.confusion, result.confusion) and saved.top_losses(4) == result.top_losses(4)

    real = data_module.load_fashion_mnist  # the command verifies the data set: not the synthetic one here
    for module in ("fmnist_ignite.analysis.inference", "fmnist_ignite.analysis.interpretation"):
        monkeypatch.setattr(f"{module}.load_fashion_mnist", lambda d, verify=True, **kw: real(d, verify=False, **kw))
    png = tmp_path / "top.png"
    argv = ["evaluate", str(result.best_checkpoint), "--data-dir", small_config.data_dir, "--device", "cpu"]
    assert main([*argv, "--top-losses", str(png), "--top-k", "6"]) == 0
    assert f"Top losses: {png}" in capsys.readouterr().out
    with Image.open(png) as image:
        assert image.format == "PNG" and image.size[0] > 400


def test_the_lr_finder_and_the_tuner_show_themselves(tmp_path):
    lrs = [10 ** (-6 + 6 * i / 49) for i in range(50)]
    found = LRFinderResult(1e-3, lrs, [2.3 - min(i, 30) * 0.05 + max(0, i - 40) * 0.3 for i in range(50)])
    fig = found.plot(tmp_path / "lr.png")
    assert fig.axes[0].get_xscale() == "log" and fig.axes[0].get_title() == "Learning-rate finder: suggestion 0.001"
    assert (tmp_path / "lr.png").stat().st_size > 1000
    optuna = pytest.importorskip("optuna")
    from fmnist_ignite.experiments.tuning import TuneResult

    study = optuna.create_study(direction="maximize")
    distributions = {
        "lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True),
        "optimizer": optuna.distributions.CategoricalDistribution(["sgd", "adam"]),
    }
    for value, name in ((0.81, "sgd"), (0.87, "adam")):
        study.add_trial(
            optuna.trial.create_trial(
                params={"lr": 0.01, "optimizer": name},
                distributions=distributions,
                value=value,
                user_attrs={"epochs": 3},
            )
        )
    html = TuneResult(study, tmp_path, None)._repr_html_()
    assert (
        "<table" in html
        and html.index("0.8700") < html.index("0.8100")
        and '<td style="text-align:right">adam</td>' in html
    )


# ---------------------------------------------------------------------------------------------- in a kernel


@pytest.fixture(scope="module", autouse=True)
def this_environment_s_kernelspecs_first():
    """The "python3" kernelspec is looked up in this virtual environment first (the Makefile installs it
    there), before any of the user's own: the kernel must be this environment's python."""
    with pytest.MonkeyPatch.context() as patch:
        ours = str(Path(sys.prefix) / "share" / "jupyter")
        patch.setenv("JUPYTER_PATH", os.pathsep.join(p for p in (ours, os.environ.get("JUPYTER_PATH")) if p))
        yield


def kernel_environment(tmp_path: Path) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "FMNIST_DATA_DIR": str(tmp_path / "no-system-copy")}


def start_kernel(cwd: Path):
    """A "python3" kernel: this virtual environment's (its kernelspec names the venv's python; one that says
    ``python`` is started as sys.executable by jupyter_client)."""
    jupyter_client = pytest.importorskip("jupyter_client")
    try:
        return jupyter_client.manager.start_new_kernel(
            kernel_name="python3", startup_timeout=90, cwd=str(cwd), env=kernel_environment(cwd)
        )
    except Exception as exc:  # no kernelspec, no ipykernel, no sockets: nothing to test here
        pytest.skip(f"a Jupyter kernel could not start: {type(exc).__name__}: {exc}")


class Kernel:
    def __init__(self, km, kc):
        self.km, self.kc = km, kc

    def start(self, code: str) -> str:
        return self.kc.execute(code)

    def finish(self, msg_id: str, timeout: float = 180) -> tuple[str, list[tuple[str, dict]]]:
        """The reply's status and the outputs (message type, content) of the execution ``msg_id``."""
        outputs, deadline = [], time.monotonic() + timeout
        while True:
            msg = self.kc.get_iopub_msg(timeout=max(1.0, deadline - time.monotonic()))
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                break
            if msg["msg_type"] in ("stream", "display_data", "update_display_data", "execute_result", "error"):
                outputs.append((msg["msg_type"], msg["content"]))
        while True:
            reply = self.kc.get_shell_msg(timeout=max(1.0, deadline - time.monotonic()))
            if reply["parent_header"].get("msg_id") == msg_id:
                return reply["content"]["status"], outputs

    def run(self, code: str, timeout: float = 180) -> tuple[str, list[tuple[str, dict]]]:
        return self.finish(self.start(code), timeout)


def printed(outputs) -> str:
    return "".join(content["text"] for kind, content in outputs if kind == "stream" and content["name"] == "stdout")


def last_json(outputs) -> dict:
    return json.loads(printed(outputs).strip().splitlines()[-1])


def views(outputs) -> list[str]:
    return [
        c["data"]["text/html"]
        for k, c in outputs
        if k in ("display_data", "update_display_data") and "text/html" in c["data"]
    ]


KERNEL_SET_UP = """
import json, logging, os, signal, sys, threading, time
from pathlib import Path
from ignite.engine import Events
from fmnist_ignite import Config, choose_display, claim_run_directory, train

kernel_sigint = signal.getsignal(signal.SIGINT)
base = Config(data_dir={data!r}, verify_data=False, val_size=100, batch_size=10, eval_batch_size=100, epochs=3,
              device="cpu", precision="fp32", plots=False, log_interval=20, threads=1)


def slow_from_epoch_2(trainer):
    @trainer.on(Events.ITERATION_COMPLETED)
    def slow(engine):
        if engine.state.epoch >= 2:
            if engine.state.iteration == engine.state.epoch_length + 5:
                Path("mid-epoch-2").touch()
            time.sleep(0.05)


def census():
    return {{
        "threads": sorted(t.name for t in threading.enumerate()),
        "fds": len(os.listdir("/proc/self/fd")),
        "sigint_is_the_kernel_s": signal.getsignal(signal.SIGINT) is kernel_sigint,
        "sigterm": repr(signal.getsignal(signal.SIGTERM)),
        "log_handlers": {{name: len(logging.getLogger(name).handlers) for name in ("", "ignite", "py.warnings")}},
    }}


print(json.dumps({{"python": sys.executable, "display": choose_display()}}))
"""


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("kernel")
    data = write_synthetic(cwd / "data")
    km, kc = start_kernel(cwd)
    kernel = Kernel(km, kc)
    try:
        status, outputs = kernel.run(KERNEL_SET_UP.format(data=str(data)))
        assert status == "ok", outputs
        kernel.facts = last_json(outputs)
        kernel.cwd = cwd
        yield kernel
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_the_kernel_is_this_venv_s_python_and_a_run_in_it_shows_the_notebook_view(kernel):
    assert Path(kernel.facts["python"]).resolve() == Path(sys.executable).resolve()
    assert kernel.facts["display"] == "notebook"
    status, outputs = kernel.run('r = train(base.replace(epochs=1, output_dir="auto-view")); print(r.epochs_run)')
    assert status == "ok" and printed(outputs) == "1\n"  # nothing else printed: the lines are in the view
    kinds = [kind for kind, _ in outputs]
    assert kinds.count("display_data") == 1 and "update_display_data" in kinds
    assert '<table class="fmnist-epochs"' in views(outputs)[-1] and "Done: 1 epoch " in views(outputs)[-1]
    status, outputs = kernel.run('train(base.replace(epochs=1, output_dir="plain", display="plain")); None')
    assert status == "ok" and not views(outputs)  # the override: text lines only
    assert "Epoch 1\n" in printed(outputs) and "loss: " in printed(outputs) and "\r" not in printed(outputs)
    status, outputs = kernel.run(
        "import matplotlib\nfrom fmnist_ignite.ui.plots import pyplot\npyplot()\nprint(matplotlib.get_backend())"
    )
    assert status == "ok" and "inline" in printed(outputs)  # the notebook's backend stays for the user's figures


def test_the_stop_button_mid_epoch_checkpoints_and_the_next_cell_resumes(kernel):
    msg_id = kernel.start('train(base.replace(output_dir="stopped"), extra_handlers=[slow_from_epoch_2])')
    marker, deadline = kernel.cwd / "mid-epoch-2", time.monotonic() + 120
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert marker.exists(), "the run never reached the middle of epoch 2"
    kernel.km.interrupt_kernel()
    status, outputs = kernel.finish(msg_id)
    errors = [content for kind, content in outputs if kind == "error"]
    assert status == "error" and [e["ename"] for e in errors] == ["TrainingInterrupted"]
    assert "interrupted by SIGINT at epoch 2" in errors[0]["evalue"]
    assert errors[0]["traceback"] == [  # short: the message and what to do, no frames of the library
        f"TrainingInterrupted: {errors[0]['evalue']}",
        "Continue it with resume='auto' and output_dir='stopped'",
    ]
    assert kernel.km.is_alive()
    saved = list((kernel.cwd / "stopped").glob("interrupted_checkpoint_*.pt"))
    assert len(saved) == 1 and 50 < int(saved[0].stem.rsplit("_", 1)[1]) < 100  # mid-epoch 2 (50 batches an epoch)
    assert f"Interrupted after 1 epoch; saved {saved[0].name}, continue with resume='auto'" in unescape(
        views(outputs)[-1]
    )

    status, outputs = kernel.run(
        'after_stop = census()["sigint_is_the_kernel_s"]\n'
        'r = train(base.replace(output_dir="stopped", resume="auto"))\n'
        'print(json.dumps({"sigint": after_stop, "epochs": [row["epoch"] for row in r.history], "run": r.epochs_run}))'
    )
    assert status == "ok", outputs
    assert last_json(outputs) == {"sigint": True, "epochs": [1, 2, 3], "run": 3}
    assert "Done: 3 epochs" in views(outputs)[-1]


def test_a_library_error_in_a_kernel_is_one_short_block_in_the_python_api_s_words(kernel):
    status, outputs = kernel.run('train(base.replace(epochs=1, output_dir="taken"))')
    assert status == "ok", outputs
    status, outputs = kernel.run('train(base.replace(epochs=1, output_dir="taken"))')  # holds checkpoints now
    (error,) = [content for kind, content in outputs if kind == "error"]
    assert status == "error" and error["ename"] == "FmnistError"
    assert len(error["traceback"]) == 1 and "\x1b" not in error["traceback"][0]  # no frames of the library
    line = error["traceback"][0]
    assert line.startswith("FmnistError: ") and "continue it with resume='auto', or choose another output_dir" in line
    assert "--" not in line  # no command-line flag: the reader wrote Config(...)
    status, outputs = kernel.run("Config(epoch=2)")
    (error,) = [content for kind, content in outputs if kind == "error"]
    assert error["traceback"] == ["UnknownSetting: Config has no setting 'epoch' (did you mean epochs?)"]


def test_runs_again_and_again_in_one_kernel_leak_no_threads_handlers_or_lock(kernel):
    status, outputs = kernel.run(
        'train(base.replace(epochs=1, output_dir="again-1"))\n'
        "before = census()\n"
        'train(base.replace(epochs=1, output_dir="again-2"))\n'
        "after = census()\n"
        'claim_run_directory(base.replace(output_dir="again-2", resume="auto")).release()\n'
        'print(json.dumps({"before": before, "after": after}))'
    )
    assert status == "ok", outputs
    found = last_json(outputs)
    assert found["after"] == found["before"] and found["after"]["sigint_is_the_kernel_s"]


@pytest.mark.slow  # a real Jupyter kernel
def test_the_example_notebook_runs_in_a_real_kernel_and_shows_its_views_and_figures(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.read(EXAMPLE, as_version=4)
    assert all(
        not cell.get("outputs") and not cell.get("execution_count")
        for cell in notebook.cells
        if cell.cell_type == "code"
    )
    data = write_synthetic(tmp_path / "synthetic")
    messages: list[tuple[int, str, dict]] = []

    class Recording(nbclient.NotebookClient):
        def process_message(self, msg, cell, cell_index):
            messages.append((cell_index, msg["msg_type"], msg["content"]))
            return super().process_message(msg, cell, cell_index)

    env = {**kernel_environment(tmp_path), "FMNIST_SMOKE": "1", "FMNIST_SMOKE_DATA": str(data)}
    client = Recording(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.km = client.create_kernel_manager()
    try:
        client.start_new_kernel(env=env)
        client.start_new_kernel_client()
    except Exception as exc:
        client.km.shutdown_kernel(now=True)
        pytest.skip(f"a Jupyter kernel could not start: {type(exc).__name__}: {exc}")
    client.execute()

    def cell_index(start: str) -> int:
        return next(i for i, cell in enumerate(notebook.cells) if cell.source.startswith(start))

    def outputs(start: str) -> list:
        return notebook.cells[cell_index(start)].outputs

    every = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in every if o.output_type == "error"]
    assert not [o for o in every if o.output_type == "stream" and "Traceback" in o.text]

    run = cell_index("from fmnist_ignite import train")
    kinds = [kind for i, kind, content in messages if i == run]
    assert kinds.count("display_data") == 1 and kinds.count("update_display_data") >= 2  # one area, updated in place
    (shown,) = outputs("from fmnist_ignite import train")  # the view's last state, nothing else
    html = shown.data["text/html"]
    assert '<table class="fmnist-epochs"' in html and html.count("<tr") == 1 + 2 + 1 + 10  # 2 epochs, per-class
    assert "data:image/png;base64," in html and "Test, best (epoch " in html
    composed = outputs("from fmnist_ignite import (")
    assert "Composed by hand" in composed[0].data["text/html"] and "Test accuracy" in composed[1].text
    result_cell = [c for c in notebook.cells if c.source.strip() == "result"][0]
    assert "<b>TrainResult</b>" in result_cell.outputs[0].data["text/html"]
    for start in (
        "result.plot_curves()",
        "result.plot_confusion()",
        "result.plot_top_losses(9)",
        "from fmnist_ignite import LrFindSettings, find_lr",
        "import matplotlib.pyplot as plt",
    ):
        assert [o for o in outputs(start) if "image/png" in o.get("data", {})], start
    for start in ("result.most_confused(5)", "from fmnist_ignite import interpret"):  # tables, not tuples
        shown = outputs(start)[-1].data
        assert shown["text/plain"].splitlines()[0] == "Class pairs most often confused"
        assert shown["text/plain"].splitlines()[1].split() == ["true", "predicted", "count"]
        assert "<th>predicted</th>" in shown["text/html"] and "Confused(" not in shown["text/plain"]
