"""Bad input from the command line: a clear line, exit code 2, and nothing in the output directory touched."""

from __future__ import annotations

import errno
import gzip

import pytest
import torch
from conftest import write_idx, write_synthetic
from ignite.handlers import DiskSaver

from fmnist_ignite import FmnistError, train
from fmnist_ignite.cli.main import train_main as main


@pytest.fixture
def guarded_output(tmp_path):
    """An output directory holding an earlier run's checkpoint, which no bad invocation may touch."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "training_checkpoint_3.pt").write_bytes(b"an earlier run's checkpoint")
    return out


def run_cli(argv, capsys) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err


def fake_train_images(path, fill: int):
    """A file with the real header and shape (60000 x 28 x 28) but other pixels."""
    write_idx(path, torch.full((60000, 28, 28), fill, dtype=torch.uint8))


def not_fashion_mnist(directory, problem):
    write_synthetic(directory)
    images = directory / "train-images-idx3-ubyte.gz"
    if problem == "shape":
        return "shape (600, 28, 28), expected (60000, 28, 28)"
    if problem == "magic":
        raw = bytearray(gzip.decompress(images.read_bytes()))
        raw[2:4] = b"\x0d\x03"  # float data, 3 dimensions: an IDX file, but not of bytes
        images.write_bytes(gzip.compress(bytes(raw)))
        return "not an IDX file of unsigned bytes (bad magic number)"
    if problem == "checksum":
        fake_train_images(images, fill=7)
        return "checksum mismatch: not the Fashion-MNIST data"
    if problem == "truncated":
        images.write_bytes(images.read_bytes()[:100])
        return "cannot read it"
    raise AssertionError(problem)


@pytest.mark.parametrize("problem", ["shape", "magic", "checksum", "truncated"])
def test_a_data_dir_that_is_not_fashion_mnist_is_refused(tmp_path, capsys, problem):
    message = not_fashion_mnist(tmp_path / "data", problem)
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    code, err = run_cli(["--data-dir", str(tmp_path / "data"), "--output-dir", str(out)], capsys)
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"error: {tmp_path / 'data' / 'train-images-idx3-ubyte.gz'}: ") and message in err
    assert sorted(p.name for p in out.iterdir()) == [".lock", "notes.txt"] and (out / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize(
    "flags",
    [["--lr", "0"], ["--batch-size", "0"], ["--epochs", "0"], ["--patience", "-1"], ["--val-size", "60000"]],
)
def test_bad_flags_leave_an_existing_output_dir_alone(guarded_output, capsys, flags):
    code, err = run_cli([*flags, "--output-dir", str(guarded_output)], capsys)
    assert code == 2 and err.startswith("error: ")
    assert (guarded_output / "training_checkpoint_3.pt").read_bytes() == b"an earlier run's checkpoint"


def test_cuda_without_cuda_is_refused_before_anything_runs(monkeypatch, guarded_output, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, err = run_cli(["--device", "cuda", "--output-dir", str(guarded_output)], capsys)
    assert code == 2 and "no CUDA device" in err


def test_a_full_disk_mid_run_is_one_line_and_keeps_the_earlier_checkpoints(small_config, monkeypatch):
    real_save = DiskSaver.__call__
    calls = []

    def fail_from_the_third_save(self, checkpoint, filename, metadata=None):
        calls.append(filename)
        if len(calls) >= 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(self, checkpoint, filename, metadata)

    monkeypatch.setattr(DiskSaver, "__call__", fail_from_the_third_save)
    with pytest.raises(
        FmnistError,
        match=r"could not write .*: No space left on device; the checkpoints already there are intact "
        r"\(newest: training_checkpoint_1.pt\): free some space, then continue with resume='auto'",
    ):
        train(small_config)
    saved = torch.load(f"{small_config.output_dir}/training_checkpoint_1.pt", weights_only=True)
    assert saved["trainer"]["iteration"] == 10


def test_an_output_dir_that_cannot_be_created_is_reported(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    code, err = run_cli(["--output-dir", str(tmp_path / "file" / "run")], capsys)
    assert code == 2 and "is not writable" in err and err.count("\n") == 1
    assert (tmp_path / "file").is_file()


def test_a_plain_message_is_shown_as_written_in_a_notebook_and_on_the_command_line():
    from fmnist_ignite.errors import FmnistError

    error = FmnistError("could not write /srv/a--b/{x}.json: disk full")  # no fields: no braces read, no rewriting
    assert error._render_traceback_() == [f"FmnistError: {error.on_command_line()}"]
    assert str(error) == "could not write /srv/a--b/{x}.json: disk full"


def test_a_settings_dataclass_names_the_closest_field_for_an_unknown_keyword():
    from fmnist_ignite import Config, LrFindSettings, TuneSettings
    from fmnist_ignite.errors import UnknownSetting

    with pytest.raises(UnknownSetting, match=r"^Config has no setting 'epoch' \(did you mean epochs\?\)$"):
        Config(epoch=2)
    with pytest.raises(TypeError, match=r"^TuneSettings has no setting 'trails' \(did you mean trials\?\)$"):
        TuneSettings(trails=3)
    with pytest.raises(UnknownSetting, match=r"^LrFindSettings has no setting 'colour'$"):
        LrFindSettings(colour=1)
    assert Config(epochs=2).replace(lr=0.5).lr == 0.5  # known fields still work, positional or not
    from fmnist_ignite.errors import MissingSetting

    with pytest.raises(MissingSetting, match=r"^TuneSettings needs trials \(it has no default\)$"):
        TuneSettings(keep_trials="best")
    assert TuneSettings(3).trials == TuneSettings(trials=3).trials == 3
