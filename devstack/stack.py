"""One local stack, built the same way by the run command, the end-to-end tests and the benchmark.

``stack_env`` assembles its settings, ``emulator_api`` is an authenticated client of the
emulator's Aiwyn API, and ``LocalStack`` starts Redis, the emulator, the release, web and
workers as asked, and stops them all (also as a context manager).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx

from devstack.services import RELEASE_STEPS, Process, run_release, start_emulator, start_redis, start_web, start_worker

# Settings a stack sets itself; a developer's own must not leak into one (see ``clean_environ``).
OURS = ("AIWYN_", "EMULATOR_", "REDIS_URL", "DATABASE_URL", "PUBLIC_URL", "PORT")
EMULATOR_TOKEN_PATH = "/api/v1/auth/token"
STOP_ORDER = ("worker", "web", "emulator", "redis")  # what depends on another stops first


def clean_environ() -> dict[str, str]:
    """This machine's environment without any setting of ours, so a developer's own cannot leak in."""
    return {k: v for k, v in os.environ.items() if not k.startswith(OURS)} | {"PYTHONUNBUFFERED": "1"}


def web_settings(port: int, secrets_key: str) -> dict[str, str]:
    """The service on plain http on loopback at ``port``, registered under that address."""
    return {
        "PORT": str(port),
        "PUBLIC_URL": f"http://127.0.0.1:{port}",
        "AIWYN_RECEIVER_BIND_HOST": "127.0.0.1",
        "AIWYN_RECEIVER_ALLOW_HTTP": "1",  # the local stack serves plain http on loopback
        "AIWYN_RECEIVER_SECRETS_KEY": secrets_key,
    }


def emulator_settings(client_id: str, client_secret: str, retry_schedule: str) -> dict[str, str]:
    """The emulator's credentials, the same ones for the service, and the emulator's retry schedule."""
    return {
        "EMULATOR_CLIENT_ID": client_id,
        "EMULATOR_CLIENT_SECRET": client_secret,
        "EMULATOR_RETRY_SCHEDULE": retry_schedule,
        "AIWYN_CLIENT_ID": client_id,
        "AIWYN_CLIENT_SECRET": client_secret,
    }


def stack_env(
    database_url: str,
    *,
    port: int,
    client: tuple[str, str],
    secrets_key: str,
    retry_schedule: str,
    **extra: str,
) -> dict[str, str]:
    """The environment of every process of a local stack (``REDIS_URL`` and ``AIWYN_BASE_URL`` come when those start)."""
    return (
        clean_environ()
        | emulator_settings(*client, retry_schedule)
        | web_settings(port, secrets_key)
        | {"DATABASE_URL": database_url}
        | extra
    )


def emulator_api(base_url: str, client_id: str, client_secret: str, timeout: float = 10) -> httpx.Client:
    """A client of the emulator's Aiwyn API holding a token for these credentials."""
    api = httpx.Client(base_url=base_url, timeout=timeout)
    token = api.post(EMULATOR_TOKEN_PATH, data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": client_secret})
    token.raise_for_status()
    api.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
    return api


@dataclass
class LocalStack:
    """The processes of a local stack, by name (``worker``, ``worker1``…), and where they answer.

    ``start`` fills ``env`` with ``REDIS_URL`` and ``AIWYN_BASE_URL``; ``stop`` (or leaving a
    ``with`` block) stops whatever is in ``processes``, workers first and Redis last.
    """

    directory: Path
    env: dict[str, str]
    emulator_url: str = ""
    web_url: str = ""
    processes: dict[str, Process] = field(default_factory=dict)

    def start(
        self,
        *,
        durable_redis: bool = False,
        prepare: Callable[[Self], None] | None = None,
        release: Sequence[tuple[str, str]] = RELEASE_STEPS,
        web: bool = True,
        workers: int = 1,
    ) -> Self:
        """Redis (unless ``env`` names one), the emulator, ``prepare(self)``, the ``release`` steps, then web and ``workers`` RQ workers.

        If any of it fails, what had started is stopped before the error propagates.
        """
        try:
            if "REDIS_URL" not in self.env:  # else a Redis of the caller's (a Sentinel set, say)
                self.processes["redis"], self.env["REDIS_URL"] = start_redis(self.directory / "redis", durable=durable_redis)
            self.processes["emulator"], self.emulator_url = start_emulator(self.env, self.directory / "emulator.log")
            self.env["AIWYN_BASE_URL"] = self.emulator_url
            if prepare is not None:
                prepare(self)
            if release:
                run_release(self.env, self.directory / "release.log", release)
            if web:
                port = int(self.env["PORT"])
                self.processes["web"] = start_web(self.env, self.directory / "web.log", port)
                self.web_url = f"http://127.0.0.1:{port}"
            for n in range(workers):
                name = "worker" if n == 0 else f"worker{n}"
                self.processes[name] = start_worker(self.env, self.directory / f"{name}.log")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 10.0) -> None:
        def rank(name: str) -> int:
            return next((i for i, kind in enumerate(STOP_ORDER) if name.startswith(kind)), -1)

        for name in sorted(self.processes, key=rank):
            self.processes[name].stop(timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.stop()
