"""Fixtures for the emulator's tests: a real emulator on a free port, a real local webhook receiver,
and a small API client. Everything talks real HTTP over 127.0.0.1."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from emulator import EmulatorServer, Settings

STANDARD_TYPES = [
    "client", "contact", "clientBusinessEntity", "contactClient", "contactInfo", "department",
    "industry", "jobTemplate", "office", "serviceLine", "staff",
]  # fmt: skip
FAST = {"port": 0, "retry_schedule": (0.1, 0.2), "delivery_timeout": 0.5, "sender_threads": 4}


@dataclass(frozen=True)
class Received:
    """One POST the receiver got."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """A webhook receiver on 127.0.0.1:<free port>: records every POST and answers as told.

    `answer(status, times, sleep)` queues answers for the next requests; afterwards it answers 200.
    """

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.default_status = 200
        self._plan: list[tuple[int, float]] = []
        self._cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._cond:
                    status, sleep = receiver._plan.pop(0) if receiver._plan else (receiver.default_status, 0.0)
                    receiver.received.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body, time.monotonic()))
                    receiver._cond.notify_all()
                if sleep:
                    time.sleep(sleep)
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the emulator gave up waiting (the timeout case)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}/hook"

    def answer(self, status: int, times: int = 1, sleep: float = 0.0) -> None:
        with self._cond:
            self._plan.extend([(status, sleep)] * times)

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Received]:
        """The first `count` requests, waiting for them to arrive."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.received) >= count, timeout):
                raise AssertionError(f"expected {count} requests, got {len(self.received)}")
            return list(self.received[:count])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class EmulatorClient:
    """Real-HTTP client of one emulator, holding a valid token."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.http = httpx.Client(base_url=base_url, trust_env=False, timeout=10)
        token = self.http.post(
            "/api/v1/auth/token",
            data={"grant_type": "client_credentials", "client_id": "local-client", "client_secret": "local-secret"},
        ).json()["access_token"]
        self.http.headers["Authorization"] = f"Bearer {token}"

    def subscribe(
        self, url: str, entity_types: list[str] | None = None, operations: list[str] | None = None, **extra: Any
    ) -> dict[str, Any]:
        body = {
            "name": extra.pop("name", "test"),
            "url": url,
            "entityTypes": entity_types or ["client"],
            "operations": operations or ["CREATE", "UPDATE", "DELETE"],
            **extra,
        }
        response = self.http.post("/api/v1/event-subscriptions", json=body)
        assert response.status_code == 201, response.text
        return response.json()["data"]

    def secret(self, subscription_id: str) -> str:
        return self.http.get(f"/api/v1/event-subscriptions/{subscription_id}/secret").json()["data"]["secrets"][0]["secret"]

    def records(self, method: str, *records: dict[str, Any]) -> httpx.Response:
        return self.http.request(method, "/api/v1/records", json={"records": list(records)})

    def upsert(self, *records: dict[str, Any]) -> dict[str, Any]:
        response = self.records("POST", *records)
        assert response.status_code == 200, response.text
        return response.json()["data"]

    def seed(self, entity_type: str, count: int, **attributes: Any) -> None:
        response = self.http.post("/_emulator/seed", json={"type": entity_type, "count": count, "attributes": attributes})
        assert response.status_code == 200 and response.json() == {"created": count}, response.text

    def page(self, entity_type: str, **params: Any) -> dict[str, Any]:
        """One page of `GET /api/v1/records/{type}` (contract §5b)."""
        response = self.http.get(f"/api/v1/records/{entity_type}", params=params)
        assert response.status_code == 200, response.text
        return response.json()["data"]

    def stats(self) -> dict[str, int]:
        return self.http.get("/_emulator/stats").json()

    def wait_idle(self, timeout: float = 10.0) -> dict[str, int]:
        """Poll the stats until no delivery is pending."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            stats = self.stats()
            if stats["pending"] == 0:
                return stats
            time.sleep(0.02)
        raise AssertionError(f"sender still busy: {self.stats()}")

    def deliveries(self, subscription_id: str) -> list[dict[str, Any]]:
        return self.http.get(f"/_emulator/subscriptions/{subscription_id}/deliveries").json()["deliveries"]

    def stored(self, entity_type: str) -> list[dict[str, Any]]:
        return self.http.get("/_emulator/records", params={"type": entity_type}).json()["records"]


@pytest.fixture
def make_emulator() -> Iterator[Callable[..., EmulatorServer]]:
    """Start emulators with fast settings (`FAST`, overridable); all are stopped after the test."""
    servers: list[EmulatorServer] = []

    def make(**overrides: Any) -> EmulatorServer:
        server = EmulatorServer(Settings(**{**FAST, **overrides}))
        server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def emulator(make_emulator: Callable[..., EmulatorServer]) -> EmulatorServer:
    return make_emulator()


@pytest.fixture
def api(emulator: EmulatorServer) -> Iterator[EmulatorClient]:
    client = EmulatorClient(emulator.base_url)
    yield client
    client.http.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def closed_port_url() -> str:
    """A URL on a port nothing listens on (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


@pytest.fixture
def client_for() -> Iterator[Callable[[EmulatorServer], EmulatorClient]]:
    """Build API clients for emulators made with `make_emulator`; closed after the test."""
    clients: list[EmulatorClient] = []

    def make(server: EmulatorServer) -> EmulatorClient:
        clients.append(EmulatorClient(server.base_url))
        return clients[-1]

    yield make
    for client in clients:
        client.http.close()
