"""Figures that are matplotlib ``Figure`` objects of their own, never pyplot's.

A figure made here needs no backend and no window (nothing is switched to Agg: a notebook's own inline
backend stays as the user set it), holds no place in pyplot's list of open figures (nothing to close,
nothing shown twice at the end of a cell), saves to a file with ``savefig``, and shows itself inline in
Jupyter as a PNG (``_repr_png_``) whether or not the notebook imported pyplot.
"""

from __future__ import annotations

import base64
import io
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure as MatplotlibFigure


@cache
def _figure_class() -> type[MatplotlibFigure]:
    from matplotlib.figure import Figure as MatplotlibFigure

    class Figure(MatplotlibFigure):
        """A matplotlib ``Figure`` that Jupyter shows as a PNG."""

        def _repr_png_(self) -> bytes:
            return png_bytes(self)

    Figure.__module__ = __name__
    return Figure


def new_figure(**kwargs: Any) -> MatplotlibFigure | None:
    """A new figure (``matplotlib.figure.Figure`` keyword arguments: figsize, dpi, ...), or None when
    matplotlib is not installed."""
    try:
        cls = _figure_class()
    except ImportError:
        return None
    return cls(**kwargs)


def png_bytes(figure: MatplotlibFigure, dpi: float | None = None) -> bytes:
    """The figure as PNG bytes."""
    out = io.BytesIO()
    figure.savefig(out, format="png", dpi=dpi)
    return out.getvalue()


def png_data_uri(figure: MatplotlibFigure, dpi: float | None = None) -> str:
    """The figure as a ``data:image/png;base64,...`` URI, for an ``<img>`` inside HTML."""
    return "data:image/png;base64," + base64.b64encode(png_bytes(figure, dpi)).decode("ascii")
