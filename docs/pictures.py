"""The pictures of docs/notebook.md, from a real run of the tutorial's settings on the real data set:
the live view as it ends (``notebook-view.png``, drawn by headless Chromium) and the test images the model
got most confidently wrong (``top-losses.png``); with ``runs``, those of docs/looking-at-runs.md: a run's
report page (``report-page.png``) and the table of runs (``runs-table.png``), from small real runs.

Run ``python docs/pictures.py [runs]`` (needs the data set, matplotlib, selenium, Debian's chromium and its
driver). The runs happen in a temporary directory, so the pictures show ``runs/...``, no one's path.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
from pathlib import Path

from ignite.engine import Events
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from fmnist_ignite import Config, list_runs, recipe, train
from fmnist_ignite.handlers import notebook

DOCS = Path(__file__).resolve().parent
PAGE = """<!doctype html><html><head><meta charset="utf-8"><style>
body {{ font: 13px system-ui, sans-serif; margin: 8px; background: white; }}
th, td {{ padding: 2px 8px; }} tr:nth-child(even) {{ background: #f5f5f5; }}
</style></head><body>{view}</body></html>"""


class LastBundle:
    """Stands in for a notebook's output area: keeps the view's last state."""

    html = ""

    def show(self, bundle: dict) -> None:
        LastBundle.html = bundle["text/html"]


def screenshot(html: str, path: Path) -> None:
    """``html`` drawn by headless Chromium, the view's box saved as a PNG."""
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--window-size=900,1400"):
        options.add_argument(argument)
    driver = webdriver.Chrome(
        service=Service("/usr/bin/chromedriver"), options=options
    )
    try:
        page = path.with_suffix(".html")
        page.write_text(PAGE.format(view=html))
        driver.get(page.as_uri())
        driver.find_element("css selector", ".fmnist-ignite-run").screenshot(
            str(path)
        )
        page.unlink()
    finally:
        driver.quit()


def main() -> None:
    notebook.JupyterOutput = LastBundle  # the view draws into LastBundle
    with tempfile.TemporaryDirectory() as work:
        os.chdir(work)
        config = Config(output_dir="runs/tutorial", display="notebook", plots=False)
        result = train(config)
        assert result is not None
        screenshot(LastBundle.html, DOCS / "notebook-view.png")
        result.plot_top_losses(9, DOCS / "top-losses.png")
    print(
        f"test accuracy {result.test_metrics['accuracy']:.2%}; pictures in {DOCS}"
    )


def browser(width: int, height: int) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--hide-scrollbars"):
        options.add_argument(argument)
    driver = webdriver.Chrome(
        service=Service("/usr/bin/chromedriver"), options=options
    )
    driver.set_window_size(width, height)
    return driver


def stop_at(iteration: int):
    """An extra handler that stops the run as Ctrl-C would, at ``iteration``."""

    def attach(trainer) -> None:
        trainer.add_event_handler(
            Events.ITERATION_COMPLETED(once=iteration),
            lambda engine: os.kill(os.getpid(), signal.SIGINT),
        )

    return attach


def run_pictures() -> None:
    """Three small runs (the tutorial's for 2 epochs, fast for 3, one stopped in its second epoch), their
    report pages written at their ends, the table of them; both drawn by headless Chromium."""
    quiet = {"log": lambda line: None}
    with tempfile.TemporaryDirectory() as work:
        os.chdir(work)
        train(
            Config(output_dir="runs/tutorial-2", epochs=2, progress=False), **quiet
        )
        fast = recipe("fast", epochs=3, output_dir="runs/fast-3", progress=False)
        train(fast, **quiet)
        try:
            train(fast.replace(output_dir="runs/fast-stopped", seed=1),
                  extra_handlers=[stop_at(300)], **quiet)  # fmt: skip
        except Exception as exc:  # noqa: BLE001 (TrainingInterrupted, as asked)
            print(exc)
        table = list_runs("runs")
        print(table)
        page = table.write_html(Path("runs.html"))
        driver = browser(1000, 1400)
        try:
            driver.get((Path("runs/fast-3/report.html")).resolve().as_uri())
            driver.save_screenshot(str(DOCS / "report-page.png"))
            driver.set_window_size(1760, 600)
            driver.get(page.resolve().as_uri())
            driver.find_element("css selector", "body").screenshot(
                str(DOCS / "runs-table.png")
            )
        finally:
            driver.quit()
    print(f"pictures in {DOCS}: report-page.png, runs-table.png")


if __name__ == "__main__":
    run_pictures() if sys.argv[1:] == ["runs"] else main()
