"""The whole service as real processes: private Redis, the emulator, release, gunicorn, RQ worker."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import sqlalchemy
from cryptography.fernet import Fernet
from sqlalchemy.orm import Session

from devstack.services import free_port
from devstack.stack import LocalStack, clean_environ, emulator_api, stack_env
from workers.database import make_engine
from workers.models import LedgerEntry, MirroredRecord

T = TypeVar("T")
CLIENT_ID, CLIENT_SECRET = "e2e-client", "e2e-secret-do-not-log"
SECRETS_KEY = Fernet.generate_key().decode()  # this test session's key for secrets at rest


def wait_for(check: Callable[[], T | None], timeout: float = 30.0, what: str = "condition") -> T:
    """Poll until ``check()`` returns something truthy, and return it."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


@dataclass
class Stack(LocalStack):
    """A running stack with what the tests ask of it: the emulator's API, the mirror, the logs."""

    _api: httpx.Client | None = None

    @property
    def database_url(self) -> str:
        return self.env["DATABASE_URL"]

    @property
    def engine(self) -> sqlalchemy.Engine:
        if "engine" not in self.__dict__:
            self.__dict__["engine"] = make_engine(self.database_url)
        return self.__dict__["engine"]

    def api(self) -> httpx.Client:
        """An authenticated client of the emulator's Aiwyn API."""
        if self._api is None:
            self._api = emulator_api(self.emulator_url, CLIENT_ID, CLIENT_SECRET)
        return self._api

    def produce_clients(self, count: int, pause: float) -> tuple[list[str], threading.Thread]:
        """Create ``count`` clients in the background, one every ``pause`` seconds; their refs and the thread."""
        refs = [f"C-{uuid.uuid4().hex[:8]}" for _ in range(count)]

        def produce() -> None:
            for ref in refs:
                self.records("POST", {"type": "client", "systemRef": {"system": "erp", "id": ref}, "attributes": {"ref": ref}})
                time.sleep(pause)

        producer = threading.Thread(target=produce)
        producer.start()
        return refs, producer

    def records(self, method: str, *records: dict[str, Any]) -> httpx.Response:
        answer = self.api().request(method, "/api/v1/records", json={"records": list(records)})
        assert answer.status_code in (200, 201, 204), answer.text
        return answer

    def subscription(self) -> dict[str, Any]:
        (sub,) = [s for s in self.api().get("/api/v1/event-subscriptions").json()["data"]["subscriptions"] if s["active"]]
        return sub

    def mirror(self, record_id: str) -> MirroredRecord | None:
        with Session(self.engine) as session:
            return session.scalars(sqlalchemy.select(MirroredRecord).where(MirroredRecord.record_id == record_id)).first()

    def ledger(self) -> list[LedgerEntry]:
        with Session(self.engine) as session:
            return list(session.scalars(sqlalchemy.select(LedgerEntry)))

    def deliveries(self) -> list[dict[str, Any]]:
        """The emulator's log of delivery attempts to our subscription."""
        path = f"/_emulator/subscriptions/{self.subscription()['id']}/deliveries"
        return httpx.get(self.emulator_url + path, timeout=5).json()["deliveries"]

    def emulator_idle(self) -> bool:
        stats = httpx.get(f"{self.emulator_url}/_emulator/stats", timeout=5).json()
        return stats["pending"] == 0

    def logs(self) -> str:
        return "\n".join(path.read_text(errors="replace") for path in sorted(self.directory.glob("*.log")))

    def stop(self, timeout: float = 10.0) -> None:
        super().stop(timeout)
        if "engine" in self.__dict__:
            self.engine.dispose()


def base_env() -> dict[str, str]:
    """This machine's environment without any setting of ours, so a developer's own cannot leak in."""
    return clean_environ()


def start_stack(
    directory: Path,
    database_url: str,
    *,
    retry_schedule: str = "0.2,0.5,1,2,3,5,8",
    durable_redis: bool = False,
    prepare: Callable[[Stack], None] | None = None,
    **extra: str,
) -> Stack:
    """Start everything the Procfile and the run command start, each as its own process.

    ``prepare`` runs once the emulator is up, before the service's first start (e.g. a tenant's existing records).
    """
    env = stack_env(
        database_url,
        port=free_port(),
        client=(CLIENT_ID, CLIENT_SECRET),
        secrets_key=SECRETS_KEY,
        retry_schedule=retry_schedule,
        EMULATOR_DELIVERY_TIMEOUT="5",
        AIWYN_RECEIVER_WEB_WORKERS="2",
        AIWYN_RECEIVER_JOB_RETRY_INTERVALS="1,1,1",
        # Every line any library writes, so that the tests' search of the logs for secrets sees them all.
        AIWYN_RECEIVER_LOG_LEVEL="DEBUG",
        # Off unless a test is about it (test_sync): a first start's backfill writes the mirror
        # beside the events, and a test that reads the ledger once the mirror has a row would race it.
        AIWYN_RECEIVER_BACKFILL_ON_START="0",
    ) | extra
    return Stack(directory, env).start(durable_redis=durable_redis, prepare=prepare)
