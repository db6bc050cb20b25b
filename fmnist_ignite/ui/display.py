"""Where a run shows itself: a Jupyter notebook, a terminal, or a file (a SLURM log, a pipe).

``choose_display("auto")`` picks the notebook view in a Jupyter kernel, the text lines and a tqdm bar
on a terminal, and the text lines alone anywhere else, so a log file never fills with a bar's ``\\r``
rewrites. The ``display`` setting (``--display``) forces one. Imports nothing heavy: the command line
and the handlers ask it before torch matters.
"""

from __future__ import annotations

import os
import sys
from typing import IO

from fmnist_ignite.config.settings import DISPLAYS


def in_jupyter_kernel() -> bool:
    """Whether this code runs in a Jupyter kernel whose front end shows HTML (tqdm's own test).

    That is: ipykernel loaded, and IPython's shell a ``ZMQInteractiveShell`` that a kernel app started, not
    Spyder's. Jupyter Lab, Notebook, VS Code and Colab pass. QtConsole runs the same kernel and cannot be told
    apart from inside it: there, ``display="plain"`` (or ``--display plain``) gives the text lines.
    """
    ipython = sys.modules.get("IPython")
    if "ipykernel" not in sys.modules or ipython is None:
        return False
    try:
        shell = ipython.get_ipython()
    except Exception:  # an IPython too old or half-imported: not a kernel we can draw in
        return False
    if shell is None or "ZMQInteractiveShell" not in {cls.__name__ for cls in type(shell).__mro__}:
        return False
    if "spyder" in type(shell).__module__.lower() or "SPY_PYTHONPATH" in os.environ:
        return False
    try:
        return "IPKernelApp" in shell.config
    except Exception:
        return False


def is_terminal(stream: IO[str]) -> bool:
    """Whether ``stream`` is a terminal (a closed or stream-less one is not)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def choose_display(setting: str = "auto", stream: IO[str] | None = None) -> str:
    """Where a run shows itself: ``notebook``, ``terminal`` or ``plain``.

    Args:
        setting: the ``display`` setting: ``setting`` itself unless it is ``auto`` (the default), which looks
            where the run is: a Jupyter kernel, else whether ``stream`` is a terminal.
        stream: the stream the run writes to; None: stderr.

    Raises:
        ValueError: ``setting`` is not one of ``auto``, ``notebook``, ``terminal`` and ``plain``.
    """
    if setting not in DISPLAYS:
        raise ValueError(f"unknown display {setting!r}: choose one of {', '.join(DISPLAYS)}")
    if setting != "auto":
        return setting
    if in_jupyter_kernel():
        return "notebook"
    return "terminal" if is_terminal(sys.stderr if stream is None else stream) else "plain"
