"""A real PostgreSQL server for the tests: Debian's postgresql (``make postgresql`` installs it), a new
cluster in a temporary directory, listening on 127.0.0.1 only, stopped and removed after."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from helpers import free_port

START_TIMEOUT_S = 60


def postgres_bin() -> Path | None:
    """The directory of initdb and pg_ctl: on PATH, else Debian's /usr/lib/postgresql/N/bin."""
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(versions[-1]).parent if versions else None


def as_server_user(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run it as the postgres user."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@contextmanager
def postgres_server() -> Iterator[str]:
    """Start a server and yield the SQLAlchemy URL of an empty database ``studies`` on it.

    Raises:
        RuntimeError: the server cannot start here (no PostgreSQL, no postgres user), with the reason.
    """
    binaries = postgres_bin()
    if binaries is None:
        raise RuntimeError("PostgreSQL is not installed (make postgresql installs Debian's)")
    root = Path(tempfile.mkdtemp(prefix="fmnist-postgres-"))
    data = root / "data"
    port = free_port()
    try:
        if os.geteuid() == 0:
            shutil.chown(root, "postgres")
        run(as_server_user([str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"]))
        options = f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={root} -c fsync=off"
        run(
            as_server_user(
                [str(binaries / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "log"), "-w"]
                + ["-t", str(START_TIMEOUT_S), "start"]
            )
        )
        try:
            import psycopg

            dsn = f"host=127.0.0.1 port={port} user=postgres dbname=postgres connect_timeout=10"
            with psycopg.connect(dsn, autocommit=True) as db:
                db.execute("CREATE DATABASE studies")
            yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/studies"
        finally:
            subprocess.run(
                as_server_user([str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]),
                capture_output=True,
                timeout=START_TIMEOUT_S,
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True, timeout=START_TIMEOUT_S)
    if done.returncode:
        lines = (done.stderr or done.stdout).strip().splitlines() or [f"exit status {done.returncode}"]
        raise RuntimeError(f"{Path(command[command.index('--') + 1 if '--' in command else 0]).name}: {lines[-1]}")
