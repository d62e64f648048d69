"""Starting the real processes of a local stack: a private Redis, the emulator, the service.

Used by the run command and by ``devstack.stack`` (which the end-to-end tests and the
benchmark build their stacks with), so all start things the same way.
Not part of the deployed service: a production deployment starts its processes from the
Procfile with its own Redis and database.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx
import redis

from config.redis_connection import connect

ROOT = Path(__file__).resolve().parent.parent


class StackError(RuntimeError):
    """A process of the local stack did not start; the message says which and how to fix it."""


_GIVEN_PORTS: set[int] = set()


def _ephemeral_low() -> int:
    """The first port of the OS's ephemeral range (where outgoing connections take theirs)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def free_port() -> int:
    """A port nobody listens on right now, below the OS's ephemeral range.

    A port the OS picked (bind to 0) is one of the ephemeral ports that outgoing connections use
    too, so between this call and a server's bind one of the stack's own connections could take
    it (seen in CI: gunicorn's "Address already in use"). Below that range, only a listener can.
    """
    low = _ephemeral_low()
    for _ in range(200):
        port = random.randrange(10_000, low) if low > 10_000 else 0
        if port in _GIVEN_PORTS:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            port = sock.getsockname()[1]
        _GIVEN_PORTS.add(port)
        return port
    raise StackError("no free port found on 127.0.0.1")


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def redis_server_binary() -> str:
    """The ``redis-server`` executable, or a ``StackError`` saying how to install it."""
    path = shutil.which("redis-server")
    if path is None:
        raise StackError(
            "redis-server is not installed. Install it (Debian/Ubuntu: 'sudo apt-get install redis-server', "
            "macOS: 'brew install redis') or set REDIS_URL to a Redis you run."
        )
    return path


class Process:
    """A child process with its output in a log file, stopped by SIGTERM then SIGKILL."""

    def __init__(self, name: str, argv: Sequence[str], env: Mapping[str, str], log_path: Path, cwd: Path = ROOT) -> None:
        self.name = name
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        # A process started again on the same log: its output starts here, not at an earlier one's
        # lines (a worker's old "Listening on" made a restart look ready at once).
        self._offset = log_path.stat().st_size if log_path.exists() else 0
        self._log = open(log_path, "ab")  # kept open for the child's lifetime
        self.popen = subprocess.Popen(
            list(argv), env=dict(env), cwd=cwd, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        """What this process wrote to its log (the whole file: ``log_path``)."""
        if not self.log_path.exists():
            return ""
        with self.log_path.open("rb") as log:
            log.seek(self._offset)
            return log.read().decode(errors="replace")

    def signal(self, signum: int) -> None:
        if self.alive():
            os.killpg(self.popen.pid, signum)

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the whole process group to stop; kill it if it does not within ``timeout``."""
        if self.alive():
            self.signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.popen.wait(5)
        self._log.close()


def wait_until(check, timeout: float, what: str, process: Process | None = None, interval: float = 0.1) -> None:  # noqa: ANN001
    """Poll ``check()`` until it is true; fail naming ``what`` and showing the process's log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and not process.alive():
            raise StackError(f"{what}: {process.name} exited with {process.popen.returncode}\n{process.output()[-3000:]}")
        try:
            if check():
                return
        except (OSError, httpx.HTTPError, redis.RedisError):
            pass
        time.sleep(interval)
    tail = f"\n{process.output()[-3000:]}" if process is not None else ""
    raise StackError(f"{what}: not ready after {timeout:.0f}s{tail}")


def start_redis(directory: Path, port: int | None = None, *, durable: bool = False) -> tuple[Process, str]:
    """A private redis-server, keeping nothing on disk unless ``durable`` (then as in production); returns it and its URL."""
    port = port or free_port()
    directory.mkdir(parents=True, exist_ok=True)
    persistence = ["--appendonly", "yes", "--appendfsync", "everysec"] if durable else ["--appendonly", "no"]
    argv = [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "", *persistence, "--dir", str(directory)]
    process = Process("redis", argv, os.environ, directory / "redis.log")
    url = f"redis://127.0.0.1:{port}/0"
    client = connect(url, socket_connect_timeout=0.5)
    wait_until(client.ping, 15, f"redis on port {port}", process)
    client.close()
    return process, url


def start_emulator(env: Mapping[str, str], log_path: Path, port: int | None = None) -> tuple[Process, str]:
    """The local Aiwyn (``python -m emulator``); returns it and its base URL."""
    port = port or free_port()
    process = Process("emulator", [sys.executable, "-m", "emulator", "--port", str(port)], env, log_path)
    base_url = f"http://127.0.0.1:{port}"
    # Its own line, not "something accepts connections on the port": that may be another emulator.
    wait_until(lambda: f"emulator listening on {base_url}" in process.output(), 20, f"emulator on port {port}", process)
    return process, base_url


RELEASE_STEPS = (("workers", "migrate"), ("workers", "views"), ("receiver", "register"))
REGISTER_ONLY = (("receiver", "register"),)


def run_release(env: Mapping[str, str], log_path: Path, steps: Sequence[tuple[str, str]] = RELEASE_STEPS) -> None:
    """The Procfile's ``release``: migrations, the typed views, then subscription registration (or only ``steps`` of it)."""
    for module, command in steps:
        argv = [sys.executable, "-m", module, command]
        process = Process("release", argv, env, log_path)
        code = process.popen.wait(120)
        process.stop()
        if code != 0:
            raise StackError(f"release step {' '.join(argv[1:])} failed:\n{process.output()[-3000:]}")


def start_web(env: Mapping[str, str], log_path: Path, port: int, app: str = "receiver:create_app()") -> Process:
    """gunicorn with the service's real configuration, as the Procfile's ``web`` runs it."""
    argv = [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "config" / "gunicorn.conf.py"), app]
    process = Process("web", argv, env, log_path)
    wait_until(lambda: httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200, 30, "web", process)
    return process


def start_worker(env: Mapping[str, str], log_path: Path) -> Process:
    """An RQ worker as the Procfile's ``worker`` runs it."""
    process = Process("worker", [sys.executable, "-m", "workers", "work"], env, log_path)
    wait_until(lambda: "Listening on" in process.output() or "listening on" in process.output().lower(), 30, "worker", process)
    return process


def local_secrets_key(path: Path) -> str:
    """A Fernet key for development, made once and kept in the git-ignored ``var/`` (mode 600)."""
    if not path.exists():
        from cryptography.fernet import Fernet

        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(Fernet.generate_key().decode())
    return path.read_text().strip()
