"""Behind a real nginx with TLS: deliveries over https through the proxy, the client address it saw in our logs."""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import ssl
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from devstack.services import ROOT, Process, free_port, wait_until
from tests.databases import throwaway_database
from tests.e2e.stack import Stack, start_stack, wait_for

pytestmark = pytest.mark.e2e
NGINX = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)
# nginx listens on another loopback address than gunicorn, as a public address would be.
EDGE = "127.0.0.2"
TOKEN = "edge-token-" + uuid.uuid4().hex


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, EDGE)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(EDGE))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_path, key_path = directory / "edge.crt", directory / "edge.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cert_path, key_path


def start_nginx(directory: Path, port: int, upstream: str, cert: Path, key: Path) -> Process:
    """nginx in the foreground with the project's server block (deploy/), rendered for loopback."""
    server = (ROOT / "deploy" / "nginx-aiwyn-receiver.conf").read_text()
    for placeholder, value in {"__LISTEN__": f"{EDGE}:{port}", "__SERVER_NAME__": EDGE, "__CERTIFICATE__": str(cert),
                               "__CERTIFICATE_KEY__": str(key), "__UPSTREAM__": upstream,
                               "__ACCESS_LOG__": str(directory / "server-access.log")}.items():  # fmt: skip
        server = server.replace(placeholder, value)
    (directory / "server.conf").write_text(server)
    temp = {name: directory / name for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
    for path in temp.values():
        path.mkdir()
    (directory / "nginx.conf").write_text(
        ("user root;\n" if os.geteuid() == 0 else "")
        + f"daemon off;\npid {directory}/nginx.pid;\nerror_log {directory}/error.log;\nevents {{}}\n"
        + f"http {{\n access_log {directory}/access.log;\n client_body_temp_path {temp['body']};\n proxy_temp_path {temp['proxy']};\n"
        + f" fastcgi_temp_path {temp['fastcgi']};\n uwsgi_temp_path {temp['uwsgi']};\n scgi_temp_path {temp['scgi']};\n"
        + f" include {directory}/server.conf;\n}}\n"
    )
    process = Process("nginx", [NGINX, "-c", str(directory / "nginx.conf"), "-p", str(directory)], os.environ, directory / "nginx.log")
    wait_until(lambda: httpx.get(f"https://{EDGE}:{port}/readyz", verify=ssl.create_default_context(cafile=cert), timeout=1).status_code in (200, 503), 20, "nginx", process)
    return process


@pytest.fixture(scope="module")
def behind_nginx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, str, Path]]:
    if NGINX is None:
        if os.environ.get("CI"):  # CI installs nginx: a missing one there is a broken CI, not a skip
            pytest.fail("nginx is not installed, and CI is set (.ci/run installs it)")
        pytest.skip("nginx is not installed (apt-get install nginx; .ci/run installs it)")
    directory = tmp_path_factory.mktemp("nginx")
    cert, key = self_signed(directory)
    port = free_port()
    public = f"https://{EDGE}:{port}"
    with throwaway_database("sqlite", directory) as database_url:
        stack = start_stack(directory, database_url, PUBLIC_URL=public, AIWYN_RECEIVER_ALLOW_HTTP="0", AIWYN_RECEIVER_CALLBACK_TOKEN=TOKEN,
                            AIWYN_RECEIVER_TRUSTED_PROXY_HOPS="1", EMULATOR_TLS_CA_FILE=str(cert))  # fmt: skip
        (directory / "edge").mkdir()
        nginx = start_nginx(directory / "edge", port, f"127.0.0.1:{stack.env['PORT']}", cert, key)
        try:
            yield stack, public, cert
        finally:
            nginx.stop()
            stack.stop()


def test_deliveries_arrive_over_https_through_nginx(behind_nginx: tuple[Stack, str, Path]) -> None:
    stack, public, cert = behind_nginx
    assert stack.subscription()["url"] == f"{public}/webhooks/aiwyn/{TOKEN}"
    ref = {"system": "erp", "id": f"C-{uuid.uuid4().hex[:8]}"}
    record_id = stack.records("POST", {"type": "client", "systemRef": ref, "attributes": {"name": "Edge LLP"}}).json()["data"]["records"][0]["id"]
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
    direct = httpx.post(f"http://127.0.0.1:{stack.env['PORT']}/webhooks/aiwyn/{TOKEN}", content=b"{}", headers={"Content-Type": "application/json", "X-Forwarded-For": "198.51.100.7"})
    assert direct.status_code == 401
    assert any("webhook rejected" in line and "client='198.51.100.7'" in line for line in stack.logs().splitlines())
    assert httpx.get(f"{public}/metrics-or-anything", verify=ssl.create_default_context(cafile=cert)).status_code == 404  # only the webhook and readiness


def test_nginx_logs_the_webhook_path_without_the_callback_token(behind_nginx: tuple[Stack, str, Path]) -> None:
    stack, public, cert = behind_nginx
    for path in (f"/webhooks/aiwyn/{TOKEN}", f"/webhooks//aiwyn/{TOKEN}", f"/webhooks/%61iwyn/{TOKEN}?x=1"):
        httpx.post(public + path, content=b"{}", headers={"Content-Type": "application/json"}, verify=ssl.create_default_context(cafile=cert))
    access_log = wait_for(lambda: (text := (stack.directory / "edge" / "server-access.log").read_text()).count("/webhooks/aiwyn/[token]") >= 3 and text,
                          timeout=10, what="nginx's access log lines")  # fmt: skip
    assert TOKEN not in access_log and '"POST /webhooks/aiwyn/[token] HTTP/1.1" 401' in access_log
