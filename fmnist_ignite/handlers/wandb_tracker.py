"""Weights & Biases through Ignite's ``WandBLogger`` (``--tracker wandb``): offline unless ``WANDB_MODE`` says
otherwise (``wandb sync`` uploads it later), its files in the run directory (``wandb/``).

Online, W&B has ``WANDB_INIT_TIMEOUT`` seconds (30 unless the environment says) to start its run, and its own
lines are held back unless it may have to ask for a login.
"""

from __future__ import annotations

import io
import netrc
import os
import secrets
import string
import time
from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext, redirect_stderr, suppress
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fmnist_ignite.config.fields import named
from fmnist_ignite.config.settings import Config
from fmnist_ignite.errors import FmnistError
from fmnist_ignite.handlers.tracker import DEFAULT_PROJECT, Tracker, shown_param, shown_uri

WANDB_INIT_TIMEOUT = 30.0  # seconds W&B online has to start its run (W&B's own: 90), unless WANDB_INIT_TIMEOUT says
OFFLINE_MODES = ("offline", "dryrun", "disabled")  # the WANDB_MODEs that reach no server


class WandbTracker(Tracker):
    """A W&B run through Ignite's ``WandBLogger``."""

    name = "wandb"
    package = "wandb"

    @classmethod
    def start(cls, output_dir: Path, run_id: str | None, params: dict[str, Any]) -> WandbTracker:
        """A W&B run through Ignite's ``WandBLogger``: offline unless ``WANDB_MODE`` says otherwise, its files in
        the run directory (``wandb/``), resumed by ``run_id`` when there is one.

        Online, W&B has ``WANDB_INIT_TIMEOUT`` seconds (30 unless the environment says) to start its run, and its
        own lines are held back unless it may have to ask for a login (no key in the environment or ``~/.netrc``).

        Raises:
            FmnistError: an online run could not be started (one line naming W&B's server).
        """
        import wandb
        from ignite.handlers.wandb_logger import WandBLogger

        mode = os.environ.get("WANDB_MODE", "offline")
        online = mode not in OFFLINE_MODES
        run_id = run_id or "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))
        settings: dict[str, Any] = {"silent": True}
        if "WANDB_INIT_TIMEOUT" not in os.environ:  # wandb.init's settings override the environment: the user's wins
            settings["init_timeout"] = WANDB_INIT_TIMEOUT
        held: AbstractContextManager[Any] = redirect_stderr(io.StringIO())
        if online and wandb_may_ask_for_login():  # its prompt must show
            held = nullcontext()
        started = time.monotonic()
        try:
            with held:
                logger = WandBLogger(
                    project=os.environ.get("WANDB_PROJECT", DEFAULT_PROJECT),
                    name=Path(output_dir).name,
                    id=run_id,
                    resume="allow",
                    dir=str(output_dir),
                    mode=mode,
                    config={k: shown_param(v) for k, v in params.items()},
                    allow_val_change=True,
                    settings=wandb.Settings(**settings),
                )
        except Exception as exc:
            if not online:
                raise
            lines = str(exc).strip().splitlines()
            why = lines[-1].rsplit(": ", 1)[-1][:200] if lines else ""
            raise FmnistError(
                "{tracker}: W&B could not start its online run at {url} ({kind}: {why}; gave up after {waited:.0f} "
                "s); WANDB_MODE=offline keeps the run on disk for wandb sync",
                tracker=named(Config, "tracker", "wandb"),
                url=wandb_base_url(),
                kind=type(exc).__name__,
                why=why,
                waited=time.monotonic() - started,
            ) from None
        where = f"{Path(output_dir) / 'wandb'} ({mode}" + ("; wandb sync uploads it)" if mode == "offline" else ")")
        return cls(run_id, where, logger)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.logger.log(metrics, step=step)

    def log_files(self, paths: Iterable[Path]) -> None:
        for path in paths:
            self.logger.save(str(path), base_path=str(path.parent), policy="now")

    def close(self, finished: bool) -> None:
        self.logger.finish(exit_code=0 if finished else 1)


def wandb_base_url() -> str:
    """The W&B server a run goes to: ``WANDB_BASE_URL``, else W&B's own setting (``wandb login --host``)."""
    given = os.environ.get("WANDB_BASE_URL")
    if given:
        return shown_uri(given)
    with suppress(Exception):
        import wandb

        return shown_uri(str(wandb.setup().settings.base_url))
    return "https://api.wandb.ai"


def wandb_may_ask_for_login() -> bool:
    """Whether W&B online may have to ask for a login: no key (or identity token) in the environment, and
    none for its server's host in ``~/.netrc`` (``NETRC`` names another file)."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return False
    host = urlsplit(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai").hostname or ""
    with suppress(Exception):  # no file, or one netrc cannot read: W&B may ask
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host) is None
    return True
