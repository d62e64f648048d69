"""Behind a real nginx with TLS: deliveries over https through the proxy, the client address it saw in our logs,
only the webhook public, and slow clients absorbed by nginx (where gunicorn alone stalls)."""

from __future__ import annotations

import socket
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import NamedTuple

import httpx
import pytest

from devstack.databases import throwaway_database
from devstack.services import ROOT, free_port
from tests.e2e.edge import EDGE, PRIVATE, render_nginx, require_nginx, self_signed, start_nginx
from tests.e2e.stack import Stack, start_stack, wait_for

pytestmark = pytest.mark.e2e
TOKEN = "edge-token-" + uuid.uuid4().hex


class Edge(NamedTuple):
    """The stack behind nginx: its public https address, its private one, the certificate to trust."""

    stack: Stack
    public: str
    private: str
    cert: Path

    def tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.cert)


@pytest.fixture(scope="module")
def behind_nginx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    require_nginx()
    directory = tmp_path_factory.mktemp("nginx")
    cert, key = self_signed(directory)
    port, private_port = free_port(), free_port()
    public = f"https://{EDGE}:{port}"
    with throwaway_database("sqlite", directory) as database_url:
        stack = start_stack(directory, database_url, PUBLIC_URL=public, AIWYN_RECEIVER_ALLOW_HTTP="0", AIWYN_RECEIVER_CALLBACK_TOKEN=TOKEN,
                            AIWYN_RECEIVER_TRUSTED_PROXY_HOPS="1", EMULATOR_TLS_CA_FILE=str(cert))  # fmt: skip
        (directory / "edge").mkdir()
        nginx = start_nginx(directory / "edge", port, private_port, f"127.0.0.1:{stack.env['PORT']}", cert, key)
        try:
            yield Edge(stack, public, f"http://{PRIVATE}:{private_port}", cert)
        finally:
            nginx.stop()
            stack.stop()


def test_deliveries_arrive_over_https_through_nginx(behind_nginx: Edge) -> None:
    stack, public, _, cert = behind_nginx
    assert stack.subscription()["url"] == f"{public}/webhooks/aiwyn/{TOKEN}"
    ref = {"system": "erp", "id": f"C-{uuid.uuid4().hex[:8]}"}
    record_id = stack.records("POST", {"type": "client", "systemRef": ref, "attributes": {"name": "Edge LLP"}}).json()["data"]["records"][
        0
    ]["id"]
    row = wait_for(lambda: stack.mirror(record_id), what="the client, delivered through nginx")
    assert row.attributes == {"name": "Edge LLP"}
    assert all(a["status"] == 202 for a in stack.deliveries())
    # The log shows the address nginx saw, from its X-Forwarded-For: a value forged by the
    # sender is left of it and ignored, since only one proxy hop is trusted.
    answer = httpx.post(f"{public}/webhooks/aiwyn/{TOKEN}", content=b"{}", headers={"Content-Type": "application/json", "X-Forwarded-For": "203.0.113.66"},
                        verify=ssl.create_default_context(cafile=cert))  # fmt: skip
    assert answer.status_code == 401
    rejected = [line for line in stack.logs().splitlines() if "webhook rejected" in line]
    assert rejected and "client='127.0.0.1'" in rejected[-1] and "203.0.113.66" not in stack.logs()
    # Whatever reaches gunicorn has passed the proxy: the address in its header is the one logged.
    direct = httpx.post(
        f"http://127.0.0.1:{stack.env['PORT']}/webhooks/aiwyn/{TOKEN}",
        content=b"{}",
        headers={"Content-Type": "application/json", "X-Forwarded-For": "198.51.100.7"},
    )
    assert direct.status_code == 401
    assert any("webhook rejected" in line and "client='198.51.100.7'" in line for line in stack.logs().splitlines())
    assert httpx.get(f"{public}/metrics-or-anything", verify=ssl.create_default_context(cafile=cert)).status_code == 404  # only the webhook


def test_nginx_logs_the_webhook_path_without_the_callback_token(behind_nginx: Edge) -> None:
    stack, public, _, cert = behind_nginx
    for path in (f"/webhooks/aiwyn/{TOKEN}", f"/webhooks//aiwyn/{TOKEN}", f"/webhooks/%61iwyn/{TOKEN}?x=1"):
        httpx.post(
            public + path, content=b"{}", headers={"Content-Type": "application/json"}, verify=ssl.create_default_context(cafile=cert)
        )
    access_log = wait_for(lambda: (text := (stack.directory / "edge" / "server-access.log").read_text()).count("/webhooks/aiwyn/[token]") >= 3 and text,
                          timeout=10, what="nginx's access log lines")  # fmt: skip
    assert TOKEN not in access_log and '"POST /webhooks/aiwyn/[token] HTTP/1.1" 401' in access_log


# ssl-config.mozilla.org, "intermediate", guidelines 5.7 (TLS 1.2 suites; TLS 1.3 has its own).
MOZILLA_INTERMEDIATE = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"
)
HARDENING = [
    "server_tokens off;", "ssl_protocols       TLSv1.2 TLSv1.3;", f"ssl_ciphers         {MOZILLA_INTERMEDIATE};",
    "client_header_timeout 10s;", "client_body_timeout 10s;", "limit_req_zone ", "limit_conn_zone ", "limit_req  zone=", "limit_conn ",
]  # fmt: skip


def test_nginx_accepts_the_file_with_its_hardening(tmp_path: Path) -> None:
    nginx = require_nginx()
    cert, key = self_signed(tmp_path)
    conf = render_nginx(tmp_path, free_port(), free_port(), "127.0.0.1:9", cert, key)
    checked = subprocess.run([nginx, "-t", "-c", str(conf), "-p", str(tmp_path)], capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stderr
    shipped = (ROOT / "deploy" / "nginx-aiwyn-receiver.conf").read_text()
    assert [line for line in HARDENING if line not in shipped] == []


def tls12_handshake(edge: Edge, ciphers: str) -> str:
    """The suite nginx picks from ``ciphers`` offered over TLS 1.2 (ssl.SSLError when none is acceptable)."""
    context = edge.tls()
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(ciphers)
    host, port = edge.public.removeprefix("https://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as raw, context.wrap_socket(raw, server_hostname=host) as tls:
        return tls.cipher()[0]


def test_only_the_webhook_is_public_and_tls_is_mozilla_intermediate(behind_nginx: Edge) -> None:
    edge = behind_nginx
    for path in ("/readyz", "/healthz", "/metrics", "/status"):
        public = httpx.get(edge.public + path, verify=edge.tls(), timeout=5)
        assert public.status_code == 404, path
        assert public.headers["server"] == "nginx"  # server_tokens off: no version
        assert httpx.get(edge.private + path, timeout=5).status_code == 200, path
    assert httpx.post(f"{edge.private}/webhooks/aiwyn/{TOKEN}", content=b"{}", timeout=5).status_code == 404
    assert tls12_handshake(edge, "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES128-SHA") == "ECDHE-ECDSA-AES128-GCM-SHA256"
    with pytest.raises(ssl.SSLError):  # in OpenSSL's "HIGH", nginx's default, but not in Mozilla's list
        tls12_handshake(edge, "ECDHE-ECDSA-AES128-SHA")


def slow_clients(stack: ExitStack, host: str, port: int, count: int, tls: ssl.SSLContext | None = None) -> list[socket.socket]:
    """``count`` connections that start a request header and never finish it (closed with ``stack``)."""
    sockets = []
    for _ in range(count):
        sock = stack.enter_context(socket.create_connection((host, port), timeout=5))
        if tls is not None:
            sock = stack.enter_context(tls.wrap_socket(sock, server_hostname=host))
        sock.sendall(b"POST /webhooks/aiwyn HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        sockets.append(sock)
    return sockets


def trickle(sockets: list[socket.socket]) -> None:
    """One more byte of the header on each connection: alive, never done."""
    for sock in sockets:
        sock.sendall(b"x")


def answers_within(url: str, seconds: float) -> bool:
    try:
        return httpx.get(url, timeout=seconds).status_code == 200
    except httpx.TimeoutException:
        return False


def test_slow_clients_do_not_stall_the_service_behind_nginx(behind_nginx: Edge) -> None:
    """What the README says: nginx holds slow clients, so gunicorn's threads never wait on them.
    (gunicorn alone has no read timeout; whether 40 slow clients stall it depends on its thread
    count and timing, so that half is documented, not asserted.)"""
    edge = behind_nginx
    host, port = edge.public.removeprefix("https://").split(":")
    # Behind nginx: 200 such connections, and gunicorn answers at once, through nginx's private block.
    with ExitStack() as held:
        sockets = slow_clients(held, host, int(port), 200, tls=edge.tls())
        for _ in range(3):
            trickle(sockets)
            started = time.monotonic()
            assert answers_within(f"{edge.private}/healthz", 2.0) and time.monotonic() - started < 1.0
            time.sleep(0.2)
