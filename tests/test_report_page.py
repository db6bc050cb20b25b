"""A run's report.html: written at the end of every run and by `fmnist-ignite report`, one self-contained page
of every result, from the run's files read as untrusted input (small real runs on synthetic data)."""

from __future__ import annotations

import errno
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import write_synthetic
from helpers import runs_of_every_kind

from fmnist_ignite import FmnistError, report, train
from fmnist_ignite.analysis import report as report_module
from fmnist_ignite.cli.main import main

IMAGE = re.compile(r'<img src="data:image/png;base64,[A-Za-z0-9+/=]+" alt="([^"]*)"')


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """A finished, a resumed, an early-stopped, a failed, a damaged and a tampered run (helpers.py)."""
    return runs_of_every_kind(tmp_path_factory.mktemp("kinds"))


class Tags(HTMLParser):
    """The elements of a page and their attributes, as a browser parses them."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str | None]]] = []
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, dict(attrs)))


def assert_self_contained(page: str) -> None:
    """No element that loads anything from elsewhere or runs a script, and the policy that forbids any request."""
    assert page.startswith("<!doctype html>")
    assert "default-src 'none'; img-src data:" in page
    tags = Tags(page).found
    assert not {tag for tag, _ in tags} & {"script", "link", "iframe", "object", "embed", "base", "form"}
    for tag, attributes in tags:
        assert not any(name.startswith("on") for name in attributes), tag
        for name in ("src", "srcset", "poster", "data"):
            if name in attributes:
                assert (attributes[name] or "").startswith("data:image/png;base64,"), (tag, attributes)
        assert not re.match(r"(?i)\s*(https?:|//|file:|javascript:)", attributes.get("href") or ""), attributes
    assert "@import" not in page and "url(" not in page


def alts(page: str) -> list[str]:
    return IMAGE.findall(page)


def test_a_run_writes_its_report_at_its_end_with_every_section(small_config, said):
    result = train(small_config)
    path = result.output_dir / "report.html"
    assert said()[-1] == f"Report: {path}"
    page = path.read_text()
    assert_self_contained(page)
    verdict = re.search(r'<p class="verdict">([^<]*)</p>', page)[1]
    accuracy = result.test_metrics["accuracy"]
    assert verdict.startswith(f"Test accuracy {100 * accuracy:.2f}% (95% CI ")
    assert ", 200 images) · ECE " in verdict and ", calibrated " in verdict and "at temperature" in verdict
    assert verdict.endswith("epoch kept: 3 (best validation loss)")
    for heading in ("Learning curves", "The test set", "Settings", "The machine", "Time"):
        assert f"<h2>{heading}</h2>" in page
    assert "Per class (worst first, 95% Wilson interval)" in page and "Most confused pairs" in page
    wrong = int((result.confusion.sum() - result.confusion.trace()).item())
    assert alts(page) == [f"test image {i}" for i in re.findall(r'alt="test image (\d+)"', page)]
    assert len(alts(page)) == min(16, wrong)  # the images, from the run's own test loader
    assert "The run drew no figures (--no-plots): fmnist-ignite report" in page  # small_config draws none
    assert '<tr class="changed"><td><code>batch_size</code></td><td>50</td><td>64</td></tr>' in page
    assert "not recorded" not in page  # the CPU's capability is in summary.json now
    assert "Wall time" in page and "Epochs: 3 timed" in page
    assert "<h2>Resumed</h2>" not in page and "What could not be read" not in page


def test_the_report_command_draws_the_figures_a_run_did_not(runs, capsys):
    pytest.importorskip("matplotlib")
    finished = runs["finished"]
    assert main(["report", str(finished), str(runs["resumed"])]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"Report: {finished / 'report.html'}",
        f"Report: {runs['resumed'] / 'report.html'}",
    ]
    page = (finished / "report.html").read_text()
    assert_self_contained(page)
    assert alts(page)[:3] == [
        "loss and validation accuracy per epoch",
        "test-set confusion matrix",
        "reliability diagram",
    ]
    assert len(alts(page)) == 3 + 16
    resumed = (runs["resumed"] / "report.html").read_text()
    assert (
        "<h2>Resumed</h2><p>The last resume began after iteration 13, from <code>interrupted_checkpoint_13.pt"
        in resumed
    )


def test_without_matplotlib_the_page_has_its_tables_and_says_what_to_install(runs, tmp_path, monkeypatch):
    real = report_module.importlib.util.find_spec
    monkeypatch.setattr(
        report_module.importlib.util, "find_spec", lambda name: None if name == "matplotlib" else real(name)
    )
    page = report(runs["finished"], output=tmp_path / "page.html").read_text()
    assert "The figures need matplotlib, the plot extra: pip install &#x27;fmnist-ignite[plot]&#x27;" in page
    assert "Per class (worst first" in page and "Most confused pairs" in page
    assert [alt for alt in alts(page) if not alt.startswith("test image")] == []


@pytest.mark.slow  # a quick-tier budget: trains more than a few steps
def test_each_kind_of_run_has_a_page_that_says_how_it_stands(runs, tmp_path):
    pages = {kind: report(path, output=tmp_path / f"{kind}.html").read_text() for kind, path in runs.items()}
    for page in pages.values():
        assert_self_contained(page)
    assert "Test accuracy 100.00%" in pages["early"] and "stopped-early</b> · 2 epochs of 10" in pages["early"]
    failed = pages["failed"]
    assert "Not scored on the test set (the run failed) · best validation accuracy" in failed
    command = f"fmnist-ignite train --resume=auto --output-dir={runs['failed']}"
    assert f"disk full; once that is fixed, continue it: <code>{command}</code>" in failed
    damaged = pages["damaged"]
    assert "No verdict: its summary.json cannot be read (below)" in damaged
    assert f"{runs['damaged'] / 'summary.json'}: not a run&#x27;s summary (not valid JSON" in damaged
    assert "<h2>Settings</h2>" in damaged  # from its config.json


def test_a_tampered_run_is_read_without_following_its_links_or_reading_too_much(runs, tmp_path):
    page = report(runs["tampered"], output=tmp_path / "page.html").read_text()
    problems = re.findall(r'<li class="problem">([^<]*)</li>', page)
    assert problems == [
        f"{runs['tampered'] / 'test_predictions.npz'}: 104,857,600 bytes, more than a test predictions file may be "
        "(67,108,864)",
        f"{runs['tampered'] / 'curves.png'}: a symbolic link, not a figure: refused "
        "(files are read from the directory)",
    ]
    assert "root:" not in page  # /etc/passwd, where the link points, was never read
    assert "Test accuracy" in page and "Per class" in page  # the summary is intact


def test_every_value_from_the_files_is_escaped(small_config, tmp_path):
    result = train(small_config)
    summary_path = result.output_dir / "summary.json"
    summary = json.loads(summary_path.read_text())
    summary["config"]["optimizer"] = "<script>alert(1)</script>"
    summary["versions"]["torch"] = '"><img src=x onerror=alert(2)>'
    summary["model"] = "<iframe src=https://example.com>"
    summary_path.write_text(json.dumps(summary))
    page = report(result.output_dir, output=tmp_path / "page.html").read_text()
    assert_self_contained(page)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<iframe" not in page and "<img src=x" not in page


def test_corruption_robustness_is_shown_when_evaluate_left_it_and_a_damaged_file_is_said(small_config, tmp_path):
    result = train(small_config)
    scores = [
        {"corruption": name, "what": "", "severity": severity, "parameter": 1.0, "accuracy": 0.5, "ci95": [0.4, 0.6],
         "count": 200}
        for name in ("gaussian_noise", "rotation") for severity in (1, 2, 3)
    ]  # fmt: skip
    kept = {"seed": 0, "clean": {"accuracy": 0.6, "ci95": [0.5, 0.7], "count": 200}, "mean_corruption_accuracy": 0.5}
    (result.output_dir / "corruptions.json").write_text(json.dumps({**kept, "corruptions": scores}))
    page = report(result.output_dir, output=tmp_path / "page.html").read_text()
    assert "<h2>Corruption robustness</h2><p>Clean test accuracy 60.0% (50.0-70.0%); mean accuracy under the" in page
    assert page.count("<td>gaussian_noise</td>") == 1 and '<th class="num">severity 3</th>' in page
    scores[0]["accuracy"] = 7
    (result.output_dir / "corruptions.json").write_text(json.dumps({**kept, "corruptions": scores}))
    page = report(result.output_dir, output=tmp_path / "page.html").read_text()
    assert "corruptions.json: corruptions[0].accuracy: expected a fraction in [0, 1], got 7" in page


def test_the_top_losses_are_listed_by_index_when_the_scored_images_are_not_found(small_config, tmp_path):
    result = train(small_config)
    shutil.rmtree(small_config.data_dir)
    page = report(result.output_dir, output=tmp_path / "page.html").read_text()
    assert "The test images were not found under " in page and "the mistakes are listed by index." in page
    assert '<th class="num">image</th>' in page and not [a for a in alts(page) if a.startswith("test image")]
    other = write_synthetic(tmp_path / "other", n_test=300)  # another test set: another fingerprint
    assert main(["report", str(result.output_dir), "--data-dir", str(other), "--output", str(tmp_path / "p.html")]) == 0
    assert "are not the ones this run scored (their fingerprint differs)" in (tmp_path / "p.html").read_text()


def test_a_report_that_cannot_be_written_never_fails_its_run(small_config, monkeypatch, said):
    def full(path, text):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(report_module, "write_durably", full)
    result = train(small_config)
    assert result.test_metrics and not (result.output_dir / "report.html").exists()
    assert said()[-1] == (
        f"Report not written (OSError: No space left on device): fmnist-ignite report {result.output_dir} tries again"
    )


def test_the_report_command_says_in_one_line_what_it_cannot_do(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {tmp_path / 'empty'}: not a run directory (no summary.json, config.json or test_predictions.npz)"
    )
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'nowhere'}: no such run directory"
    assert main(["report", "a", "b", "--output", "x.html"]) == 2
    assert capsys.readouterr().err.strip() == "error: --output names one page: give one RUN with it, not 2"
    with pytest.raises(FmnistError, match="no such run directory"):
        report(tmp_path / "nowhere")
