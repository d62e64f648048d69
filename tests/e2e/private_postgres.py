"""A private PostgreSQL cluster that a test may stop and start (an outage), as .ci/postgres.sh starts one.

Its folder is made under the system's temporary directory, not pytest's: when the tests run
as root, the server runs as the ``postgres`` user, who cannot enter pytest's private folders.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from devstack.services import free_port


def initdb_binary() -> str | None:
    """The newest installed ``initdb``, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    return found[-1] if found else shutil.which("initdb")


def require_initdb() -> str:
    """``initdb``'s path; without it, skip (fail under CI, which must run these tests)."""
    initdb = initdb_binary()
    if initdb is None:
        message = "initdb is not installed (PostgreSQL's server binaries): the database outage tests need a private cluster"
        if os.environ.get("CI"):
            pytest.fail(message + "; CI must run them")
        pytest.skip(message)
    return initdb


class PrivatePostgres:
    """One throw-away cluster on a free port, trusting local connections; ``stop``/``start`` at will."""

    def __init__(self, initdb: str) -> None:
        self._bin = Path(initdb).parent
        self.directory = Path(tempfile.mkdtemp(prefix="aiwyn-e2e-pg."))
        self.port = free_port()
        self._as_pg: list[str] = []
        if os.geteuid() == 0:
            if subprocess.run(["id", "postgres"], capture_output=True).returncode != 0:
                subprocess.run(["useradd", "--system", "--no-create-home", "postgres"], check=True)
            shutil.chown(self.directory, "postgres")
            self._as_pg = ["runuser", "-u", "postgres", "--"]
        self._run("initdb", "-D", str(self.directory / "data"), "-A", "trust", "-U", "postgres", "--no-sync")
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        result = subprocess.run([*self._as_pg, str(self._bin / tool), *args], capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"{tool} failed: {result.stdout[-2000:]}{result.stderr[-2000:]}")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.directory / "data"), "-l", str(self.directory / "log"), "-w", "-o", options, "start")

    def stop(self) -> None:
        """A fast shutdown: open connections are ended, as in a failover or a restart."""
        self._run("pg_ctl", "-D", str(self.directory / "data"), "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        try:
            self.stop()
        except RuntimeError:
            pass  # already stopped
        shutil.rmtree(self.directory, ignore_errors=True)
