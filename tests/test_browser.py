"""What a reader sees, through a real browser: the example notebook run in JupyterLab, the docs site, and the
report pages and table of runs (at a desktop's width and a phone's).

Debian's Chromium, headless, driven by selenium through Debian's chromedriver (``make browser`` installs
both); JupyterLab and a static server for the site on 127.0.0.1, started and stopped here. Skipped, with the
reason, where Chromium or its driver is missing. ``FMNIST_SCREENSHOTS=DIR`` keeps the screenshots there.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import write_synthetic
from helpers import ROOT, free_port, runs_of_every_kind, wait_for

pytestmark = pytest.mark.slow  # a browser, a Jupyter server, a docs build

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@pytest.fixture
def browser() -> Iterator:
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (the dev extra)")
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip("Chromium or chromedriver is not installed (make browser installs Debian's, as root)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000"):
        options.add_argument(argument)
    try:
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    except Exception as exc:  # a driver that does not match the browser, no display libraries, ...
        pytest.skip(f"Chromium could not start: {type(exc).__name__}: {str(exc).splitlines()[0]}")
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def screenshots(tmp_path: Path) -> Path:
    kept = os.environ.get("FMNIST_SCREENSHOTS")
    directory = Path(kept) if kept else tmp_path / "screenshots"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture
def jupyterlab(tmp_path) -> Iterator[tuple[str, Path]]:
    """JupyterLab on 127.0.0.1 serving a copy of the repository's examples/ (its runs land in the copy's
    runs/), the notebook's smoke size on synthetic data; the base URL and the root."""
    pytest.importorskip("jupyterlab", reason="jupyterlab is not installed (the dev extra)")
    root = tmp_path / "repo"
    (root / "examples").mkdir(parents=True)
    shutil.copy(ROOT / "examples" / "tutorial.ipynb", root / "examples" / "tutorial.ipynb")
    port, token = free_port(), "fmnist-browser-test"
    settings = tmp_path / "lab-settings"  # no "news?" prompt over the page
    notification = settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    notification.parent.mkdir(parents=True)
    notification.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "FMNIST_SMOKE": "1",
        "FMNIST_SMOKE_DATA": str(write_synthetic(tmp_path / "synthetic")),
        "FMNIST_DATA_DIR": str(tmp_path / "no-system-copy"),
        "JUPYTER_PATH": str(Path(sys.prefix) / "share" / "jupyter"),  # this environment's kernel first
        "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter-config"),  # none of the user's settings
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "jupyter-runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(settings),
    }
    command = [
        sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", "--LabApp.expose_app_in_browser=True",
        "--ServerApp.port_retries=0", "--ServerApp.allow_root=True", "--LabApp.news_url=",
        "--LabApp.extension_manager=readonly",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]  # fmt: skip
    log = (tmp_path / "jupyterlab.log").open("w")
    server = subprocess.Popen(command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for("JupyterLab to answer", lambda: server.poll() is not None or answers(f"{base}/api?token={token}"), 90)
        if server.poll() is not None:
            pytest.fail(f"JupyterLab exited: {(tmp_path / 'jupyterlab.log').read_text()[-2000:]}")
        yield f"{base}/lab/tree/examples/tutorial.ipynb?token={token}", root
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=20)
        log.close()


NOTEBOOK_STATE = """
const panel = window.jupyterapp && window.jupyterapp.shell.currentWidget;
if (!panel || !panel.content || !panel.sessionContext || !panel.sessionContext.session) return null;
const kernel = panel.sessionContext.session.kernel;
const code = panel.content.widgets.filter(cell => cell.model.type === 'code');
return {
  status: kernel ? kernel.status : null,
  total: code.length,
  done: code.filter(cell => cell.model.executionCount !== null).length,
};
"""

TRAIN_CELLS = """
const panel = window.jupyterapp.shell.currentWidget;
return panel.content.widgets
  .filter(cell => cell.model.type === 'code' && /(^|\\W)train\\(/.test(cell.model.sharedModel.getSource()))
  .map(cell => ({
    source: cell.model.sharedModel.getSource().split('\\n')[0],
    outputs: cell.node.querySelectorAll('.jp-OutputArea-child').length,
    views: cell.node.querySelectorAll('.fmnist-ignite-run').length,
    rows: cell.node.querySelectorAll('table.fmnist-epochs tbody tr').length,
    curves: cell.node.querySelectorAll('img[alt="learning curves"]').length,
    text: (cell.node.querySelector('.fmnist-ignite-run') || {textContent: ''}).textContent,
  }));
"""


ADD_CELL = """
const panel = window.jupyterapp.shell.currentWidget, notebook = panel.content;
notebook.activeCellIndex = notebook.widgets.length - 1;
window.jupyterapp.commands.execute('notebook:insert-cell-below').then(() => {
  notebook.activeCell.model.sharedModel.setSource(arguments[0]);
  return window.jupyterapp.commands.execute('notebook:run-cell');
});
"""
SLOWED_RUN = """\
import time
from ignite.engine import Events

def slow_after_epoch_1(trainer):
    trainer.add_event_handler(
        Events.ITERATION_COMPLETED, lambda e: time.sleep(0.3) if e.state.epoch >= 2 else None
    )

slowed = train(config.replace(epochs=3, output_dir=fresh("slowed")), extra_handlers=[slow_after_epoch_1])
"""


def test_the_example_notebook_in_jupyterlab_shows_one_live_view_per_run_and_no_error(browser, jupyterlab, tmp_path):
    url, root = jupyterlab
    shots = screenshots(tmp_path)
    browser.get(url)
    wait_for(
        "the notebook's kernel", lambda: (browser.execute_script(NOTEBOOK_STATE) or {}).get("status") == "idle", 120
    )
    browser.execute_script("window.jupyterapp.commands.execute('notebook:run-all-cells')")

    def finished() -> bool:
        state = browser.execute_script(NOTEBOOK_STATE)
        return state["done"] == state["total"] and state["status"] == "idle"

    wait_for("every cell to run", finished)
    browser.execute_script(ADD_CELL, SLOWED_RUN)  # a run slow enough to be seen mid-way
    mid_run = """
    return [...document.querySelectorAll('.fmnist-ignite-run')].find(view => view.textContent.includes('slowed')
      && view.querySelector('table.fmnist-epochs tbody tr') && !view.textContent.includes('Done:')) || null;
    """  # the slowed run's view with an epoch's row, not finished yet

    def shot_mid_run() -> str | None:
        """The view's text once its screenshot is taken; None while there is none, or when the view redrew
        between finding it and taking it (its element replaced: stale)."""
        from selenium.common.exceptions import StaleElementReferenceException

        try:
            view = browser.execute_script(mid_run)
            if view is None:
                return None
            browser.execute_script("arguments[0].scrollIntoView()", view)
            view.screenshot(str(shots / "notebook-live-view-mid-run.png"))
            return view.text
        except StaleElementReferenceException:
            return None

    text = str(wait_for("a live view mid-run", shot_mid_run, every=0.05))
    assert "Done:" not in text and re.search(r"epoch [12]/3 · batch", text)  # taken mid-run
    wait_for("the slowed run to end", finished)
    time.sleep(1)  # the last outputs rendered
    errors = browser.find_elements(
        "css selector", '[data-mime-type="application/vnd.jupyter.stderr"], .jp-OutputArea-output.jp-mod-error'
    )
    assert not errors, [e.text[:300] for e in errors]
    cells = browser.execute_script(TRAIN_CELLS)
    assert len(cells) >= 2, cells  # the tutorial trains twice, at least
    for cell in cells:
        assert cell["outputs"] == 1 and cell["views"] == 1, cell  # one output area, updated in place
        done = re.search(r"Done: (\d+) epochs?", cell["text"])
        assert done and cell["rows"] == int(done.group(1)), cell["text"][:400]  # a table row per epoch
        assert cell["curves"] == 1, cell
    view = browser.execute_script(mid_run.replace("!view.textContent.includes('Done:')", "true"))
    browser.execute_script("arguments[0].scrollIntoView()", view)
    view.screenshot(str(shots / "notebook-live-view-at-the-end.png"))
    assert "Done: 3 epochs" in view.text and "Test, " in view.text and "Text log (" in view.text
    assert (root / "runs").is_dir() and not (root / "examples" / "runs").exists()  # the repository's runs/


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    pytest.importorskip("mkdocs", reason="mkdocs is not installed (the docs extra)")
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "DISABLE_MKDOCS_2_WARNING": "true"}
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-3000:]
    return out


@pytest.fixture
def served(site, tmp_path) -> Iterator[str]:
    port = free_port()
    log = (tmp_path / "http.log").open("w")
    command = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(site)]
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for("the site's server", lambda: answers(f"{base}/"), 30)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=20)
        log.close()


LAYOUT = """
const page = document.documentElement;
const code = [...document.querySelectorAll('pre > code')]
  .filter(block => block.scrollWidth > block.clientWidth + 1)
  .map(block => block.innerText.split('\\n').sort((a, b) => b.length - a.length)[0].slice(0, 120));
const requests = performance.getEntriesByType('resource').map(entry => entry.name);
return {scrolls: page.scrollWidth > window.innerWidth + 1, code: code, requests: requests};
"""


def test_no_docs_page_scrolls_sideways_nor_asks_another_host(browser, site, served):
    pages = sorted(path.relative_to(site).as_posix() for path in site.rglob("*.html") if path.name != "404.html")
    assert len(pages) >= 15, pages
    problems = []
    for width in (1280, 390):  # a laptop, a phone
        browser.set_window_size(width, 900)
        for page in pages:
            browser.get(f"{served}/{page}")
            found = browser.execute_script(LAYOUT)
            if found["scrolls"]:
                problems.append(f"{page} at {width} px: the page scrolls sideways")
            if width == 1280 and found["code"]:
                problems.append(f"{page}: a code block wider than its column: {found['code'][0]!r}")
            elsewhere = [url for url in found["requests"] if not url.startswith(served)]
            if elsewhere:
                problems.append(f"{page}: asks another host: {elsewhere[:3]}")
    assert not problems, json.dumps(problems, indent=1)


@pytest.fixture(scope="module")
def run_pages(tmp_path_factory) -> dict[str, Path]:
    """The report page of a run of each kind (helpers.py: finished, resumed, stopped early, failed, damaged,
    tampered), the finished ones' written at their end with their figures, and the table of them all."""
    from fmnist_ignite import list_runs, report

    root = tmp_path_factory.mktemp("pages")
    runs = runs_of_every_kind(root, plots=True)
    pages = {kind: report(path) for kind, path in runs.items() if kind in ("failed", "damaged", "tampered")}
    pages.update({kind: runs[kind] / "report.html" for kind in ("finished", "resumed", "early")})  # their own
    pages["table"] = list_runs(root / "runs").write_html(root / "runs.html")
    return pages


PAGE_STATE = """
const page = document.documentElement;
const images = [...document.images].map(image => ({
  alt: image.alt, loaded: image.complete && image.naturalWidth > 0, inside: image.getBoundingClientRect().right
    <= window.innerWidth + 1}));
const requests = performance.getEntriesByType('resource').map(entry => entry.name)
  .filter(name => !name.startsWith('data:'));
const links = [...document.querySelectorAll('a[href]')].map(a => a.href);
return {scrolls: page.scrollWidth > window.innerWidth, width: page.scrollWidth, inner: window.innerWidth,
        images: images, requests: requests, svgs: document.querySelectorAll('svg').length, links: links,
        text: document.body.innerText};
"""


@pytest.mark.parametrize("width", [1280, 390], ids=["desktop", "phone"])
def test_report_pages_and_the_table_of_runs_fit_the_screen_ask_no_host_and_show_every_figure(browser, run_pages, width):
    browser.set_window_size(width, 900)
    problems = []
    seen = {}
    for kind, path in run_pages.items():
        browser.get(path.as_uri())
        found = browser.execute_script(PAGE_STATE)
        seen[kind] = found
        if found["scrolls"]:
            problems.append(f"{kind} at {width} px: scrolls sideways ({found['width']} > {found['inner']})")
        if found["requests"]:
            problems.append(f"{kind}: asks for {found['requests'][:3]}")
        for image in found["images"]:
            if not (image["loaded"] and image["inside"]):
                problems.append(f"{kind}: image {image['alt']!r} not shown whole: {image}")
        source = browser.page_source
        if re.search(r"""<[^>]+\s(src|href)=["']?(https?:|//)""", source):
            problems.append(f"{kind}: an element names another host")
    assert not problems, json.dumps(problems, indent=1)
    figures = ["loss and validation accuracy per epoch", "test-set confusion matrix", "reliability diagram"]
    for kind in ("finished", "resumed", "early", "tampered"):
        alts = [image["alt"] for image in seen[kind]["images"]]
        assert alts[:3] == figures, (kind, alts[:5])
        mistakes = [alt for alt in alts if alt.startswith("test image ")]  # the top losses, as images
        assert len(mistakes) == (16 if kind in ("finished", "resumed") else 0), (kind, alts)
    assert "The model got every test image right." in seen["early"]["text"]
    assert "Resumed" in seen["resumed"]["text"] and "stopped-early" in seen["early"]["text"]
    assert "disk full" in seen["failed"]["text"] and "--resume=auto" in seen["failed"]["text"]
    assert "No verdict: its summary.json cannot be read" in seen["damaged"]["text"]
    assert "a symbolic link, not a figure: refused" in seen["tampered"]["text"]
    table = seen["table"]
    assert sorted(Path(link).parent.name for link in table["links"]) == sorted(
        ["finished", "resumed", "early", "failed", "damaged", "tampered"]
    )  # each run's report, linked from the table, relative to it
    assert all(link.startswith("file://") and link.endswith("/report.html") for link in table["links"])
    for status in ("finished", "stopped-early", "failed", "damaged"):
        assert status in table["text"]
