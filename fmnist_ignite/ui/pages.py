"""Self-contained HTML pages (a run's ``report.html``, the table of runs): one file that asks nothing of the
network and needs no JavaScript, opened by a double-click, e-mailed, printed or read on a phone.

Every figure is inside the page as a ``data:`` URI; the page's Content-Security-Policy forbids any request
(``default-src 'none'``), so even a value read from a damaged or hostile file cannot make the page fetch
anything. Every text read from a file goes through ``html.escape``. The style sheet wraps wide tables in a box
of their own that scrolls (the page never scrolls sideways at 390 px), keeps images within the column, and
prints without the boxes, breaking pages between sections. Imports no torch.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Sequence

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
WIDE = ' class="wide"'
POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

STYLE = """
*, *::before, *::after { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1b1b1b;
  background: #fff; margin: 0 auto; padding: 12px; max-width: 1100px; overflow-wrap: break-word; }
code, .path { overflow-wrap: anywhere; } td code { overflow-wrap: normal; }
h1 { font-size: 1.45em; margin: 0.2em 0; } h2 { font-size: 1.2em; margin: 1.4em 0 0.4em;
  border-bottom: 1px solid #ddd; } h3 { font-size: 1em; margin: 1em 0 0.3em; }
code, .mono { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; font-size: 0.92em; }
.verdict { font-size: 1.1em; background: #f3f6fb; border-left: 4px solid #4c72b0; padding: 8px 12px; }
.note { color: #555; } .problem { color: #8a1c1c; } .changed td:first-child { font-weight: 600; }
.scroll { overflow-x: auto; max-width: 100%; -webkit-overflow-scrolling: touch; }
table { border-collapse: collapse; margin: 4px 0; font-variant-numeric: tabular-nums; }
th, td { padding: 3px 8px; border-bottom: 1px solid #eee; text-align: left; vertical-align: top;
  overflow-wrap: normal; }
td.num, th.num { text-align: right; white-space: nowrap; }
img { max-width: 100%; height: auto; }
figure { margin: 8px 0; } figcaption { color: #555; font-size: 0.9em; }
.figures { display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start; }
.figures figure { flex: 1 1 320px; min-width: 0; }
.grid { display: flex; flex-wrap: wrap; gap: 10px; }
.grid figure { width: 112px; margin: 0; font-size: 0.8em; }
.grid img { width: 112px; image-rendering: pixelated; border: 1px solid #ccc; }
.status-finished { color: #1e6b2a; } .status-stopped-early { color: #1e6b2a; }
.status-interrupted, .status-running { color: #8a5a00; }
.status-failed, .status-damaged { color: #8a1c1c; }
[class^="status-"] { white-space: nowrap; } body.wide { max-width: none; }
table.runs td:first-child, .fmnist-classes td, .fmnist-epochs td { white-space: nowrap; }
tr.has-note td { border-bottom: none; }
.note-row td { color: #555; font-size: 0.9em; padding-top: 0; white-space: normal; overflow-wrap: anywhere; }
.rest { columns: 16em; column-gap: 2em; font-size: 0.9em; }
.rest div { break-inside: avoid; }
footer { margin-top: 2em; color: #666; font-size: 0.85em; }
@media print {
  body { font-size: 10pt; max-width: none; padding: 0; color: #000; }
  .scroll { overflow: visible; }
  section, figure, tr { break-inside: avoid; }
  h2 { break-after: avoid; }
  .verdict { background: none; border: 1px solid #999; }
  a { color: inherit; text-decoration: none; }
}
@page { margin: 14mm; }
"""


def escape(value: object) -> str:
    """``value`` as text, escaped for HTML (quotes too: safe inside an attribute)."""
    return html.escape(str(value), quote=True)


def page(title: str, body: str, wide: bool = False) -> str:
    """A whole HTML document around ``body`` (already HTML), titled ``title`` (text, escaped here); ``wide``:
    as wide as the window (a table of many columns), not a column of reading width."""
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{POLICY}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="color-scheme" content="light">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head>\n"
        f"<body{WIDE if wide else ''}>\n{body}\n</body></html>\n"
    )


def table(headings: Sequence[str], rows: Sequence[Sequence[str]], numeric: Sequence[bool] = (), **attrs: str) -> str:
    """A table in a box that scrolls sideways on its own; ``headings`` are text (escaped here), each row's
    cells HTML already (escape what came from a file); ``numeric`` says which columns align right. A ``Row``
    with a ``note`` has it on a line of its own below, across the columns."""

    def cls(i: int) -> str:
        return ' class="num"' if i < len(numeric) and numeric[i] else ""

    head = "".join(f"<th{cls(i)}>{escape(h)}</th>" for i, h in enumerate(headings))
    body = []
    for row in rows:
        body.append(
            f"<tr{row_attributes(row)}>" + "".join(f"<td{cls(i)}>{c}</td>" for i, c in enumerate(row)) + "</tr>"
        )
        note = getattr(row, "note", "")
        if note:
            body.append(f'<tr class="note-row"><td colspan="{len(headings)}">{note}</td></tr>')
    extra = "".join(f' {name.rstrip("_")}="{escape(value)}"' for name, value in attrs.items())
    return (
        f'<div class="scroll"><table{extra}><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'
    )


class Row(list[str]):
    """A table row's cells with the class of its ``<tr>`` and a note (HTML) on a line below it."""

    def __init__(self, cells: Sequence[str], css_class: str = "", note: str = "") -> None:
        super().__init__(cells)
        self.css_class, self.note = css_class, note


def row_attributes(row: Sequence[str]) -> str:
    css_class = getattr(row, "css_class", "")
    return f' class="{escape(css_class)}"' if css_class else ""


def data_uri(png: bytes) -> str:
    """PNG bytes as a ``data:image/png;base64,...`` URI."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def is_png(data: bytes) -> bool:
    return data.startswith(PNG_SIGNATURE)


def gray_png(pixels: bytes, width: int, height: int) -> bytes:
    """An 8-bit grayscale PNG of ``width`` x ``height`` pixels, row by row (PIL's encoder)."""
    from PIL import Image

    if len(pixels) != width * height:
        raise ValueError(f"{len(pixels)} pixels for a {width} x {height} image")
    out = io.BytesIO()
    Image.frombytes("L", (width, height), pixels).save(out, format="PNG")
    return out.getvalue()


def figure(uri: str, alt: str, caption: str = "") -> str:
    """An ``<img>`` of a data URI in a ``<figure>`` (``alt`` and ``caption``: text, escaped here)."""
    text = f"<figcaption>{escape(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="{escape(uri)}" alt="{escape(alt)}">{text}</figure>'


def percent(value: float | None, digits: int = 1) -> str:
    """``82.1%``; "-" for None."""
    return "-" if value is None else f"{100 * value:.{digits}f}%"


def with_interval(value: float | None, interval: Sequence[float] | None, digits: int = 1) -> str:
    """``82.1% (81.4-82.9%)``, the interval when known; "-" for None."""
    if value is None:
        return "-"
    if not interval:
        return percent(value, digits)
    return f"{percent(value, digits)} ({100 * interval[0]:.{digits}f}-{100 * interval[1]:.{digits}f}%)"


def seconds(value: float | None) -> str:
    """``2:03``, ``1:02:03`` or ``4.2 s`` (under a minute); "-" for None."""
    if value is None or not math.isfinite(value):
        return "-"
    if value < 60:
        return f"{value:.{2 if value < 10 else 1}f} s"
    minutes, secs = divmod(round(value), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def shown_value(value: object, limit: int = 80) -> str:
    """A setting's value read from a file, as text of at most ``limit`` characters (JSON's spelling: a string
    quoted, null, true), whatever the file holds."""
    if isinstance(value, str):
        text = value
    else:
        try:
            text = json.dumps(value, sort_keys=True, default=str)
        except (TypeError, ValueError, RecursionError):
            text = f"(a {type(value).__name__} that cannot be shown)"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def fraction(value: object) -> float | None:
    """``value`` when it is a finite number in [0, 1] (a file may hold anything), else None."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and 0 <= value <= 1
    return float(value) if ok else None  # type: ignore[arg-type]  # checked just before


def number(value: object) -> float | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None  # type: ignore[arg-type]  # checked just before
