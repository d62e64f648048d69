"""A real nginx in front of the service, with the project's own files from deploy/ rendered for loopback.

nginx listens on other loopback addresses than gunicorn (as a public and a private address
would be), over TLS with a throw-away certificate. With ``hosts``, the upstream file
(deploy/nginx-aiwyn-receiver-upstream.conf) names several gunicorns, as several hosts would.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from devstack.services import ROOT, Process, wait_until

NGINX = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)
# nginx listens on another loopback address than gunicorn, as a public address would be.
EDGE = "127.0.0.2"
# The private server block (health checks, metrics) on a third one.
PRIVATE = "127.0.0.3"
SERVER_FILE = ROOT / "deploy" / "nginx-aiwyn-receiver.conf"
UPSTREAM_FILE = ROOT / "deploy" / "nginx-aiwyn-receiver-upstream.conf"
UPSTREAM_NAME = "aiwyn_receiver"


def require_nginx() -> str:
    if NGINX is None:
        if os.environ.get("CI"):  # CI installs nginx: a missing one there is a broken CI, not a skip
            pytest.fail("nginx is not installed, and CI is set (.ci/run installs it)")
        pytest.skip("nginx is not installed (apt-get install nginx; .ci/run installs it)")
    return NGINX


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


def render_upstream(hosts: Sequence[str]) -> str:
    """The upstream file with one ``server`` line per host, each with the file's own options."""
    text = UPSTREAM_FILE.read_text()
    example = re.search(r"^( *)server __WEB_HOST_1__( [^;]*)?;.*\n", text, re.MULTILINE)
    assert example is not None, "the upstream file's first server line names __WEB_HOST_1__"
    indent, options = example.group(1), example.group(2) or ""
    servers = "".join(f"{indent}server {host}{options};\n" for host in hosts)
    text = re.sub(r"^ *server __WEB_HOST_\d+__[^;]*;.*\n", "", text, flags=re.MULTILINE)
    return text[: example.start()] + servers + text[example.start() :]


def render_nginx(directory: Path, port: int, private_port: int, upstream: str | Sequence[str], cert: Path, key: Path) -> Path:
    """The project's nginx files (deploy/) rendered for loopback, inside a minimal nginx.conf; the latter's path.

    ``upstream``: one gunicorn's address, or several (then through the upstream file).
    """
    includes = []
    if not isinstance(upstream, str):
        (directory / "upstream.conf").write_text(render_upstream(upstream))
        includes.append(directory / "upstream.conf")
        upstream = UPSTREAM_NAME
    server = SERVER_FILE.read_text()
    for placeholder, value in {"__LISTEN__": f"{EDGE}:{port}", "__PRIVATE_LISTEN__": f"{PRIVATE}:{private_port}",
                               "__SERVER_NAME__": EDGE, "__CERTIFICATE__": str(cert),
                               "__CERTIFICATE_KEY__": str(key), "__UPSTREAM__": upstream,
                               "__ACCESS_LOG__": str(directory / "server-access.log")}.items():  # fmt: skip
        server = server.replace(placeholder, value)
    (directory / "server.conf").write_text(server)
    includes.append(directory / "server.conf")
    temp = {name: directory / name for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
    for path in temp.values():
        path.mkdir(exist_ok=True)
    (directory / "nginx.conf").write_text(
        ("user root;\n" if os.geteuid() == 0 else "")
        + f"daemon off;\npid {directory}/nginx.pid;\nerror_log {directory}/error.log;\nevents {{}}\n"
        + f"http {{\n access_log {directory}/access.log;\n client_body_temp_path {temp['body']};\n proxy_temp_path {temp['proxy']};\n"
        + f" fastcgi_temp_path {temp['fastcgi']};\n uwsgi_temp_path {temp['uwsgi']};\n scgi_temp_path {temp['scgi']};\n"
        + "".join(f" include {path};\n" for path in includes)
        + "}\n"
    )
    return directory / "nginx.conf"


def start_nginx(directory: Path, port: int, private_port: int, upstream: str | Sequence[str], cert: Path, key: Path) -> Process:
    """nginx in the foreground with the project's files, rendered for loopback."""
    conf = render_nginx(directory, port, private_port, upstream, cert, key)
    process = Process("nginx", [require_nginx(), "-c", str(conf), "-p", str(directory)], os.environ, directory / "nginx.log")
    wait_until(lambda: httpx.get(f"http://{PRIVATE}:{private_port}/healthz", timeout=1).status_code == 200, 20, "nginx", process)
    return process
