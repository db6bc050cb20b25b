"""The pictures of docs/notebook.md, from a real run of the tutorial's settings on the real data set:
the live view as it ends (``notebook-view.png``, drawn by headless Chromium) and the test images the model
got most confidently wrong (``top-losses.png``).

Run ``python docs/pictures.py`` (needs the data set, matplotlib, selenium, Debian's chromium and its
driver). The run happens in a temporary directory, so the pictures show ``runs/tutorial``, no one's path.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from fmnist_ignite import Config, train
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


if __name__ == "__main__":
    main()
