"""The systemd units as shipped: sandboxed (systemd-analyze security rates them OK), and the worker kept from the web's secrets."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from config.settings import _FIELDS
from devstack.services import ROOT

UNITS = [ROOT / "deploy" / "aiwyn-receiver-web.service", ROOT / "deploy" / "aiwyn-receiver-worker@.service"]
# systemd-analyze's scale: 0 to 10, "OK" up to 3.0 ("MEDIUM" to 6.9, then "EXPOSED", "UNSAFE").
MOST_EXPOSURE = 3.0
# In /etc/aiwyn-receiver/web.env, which only the web unit reads.
WEB_ONLY = ("PUBLIC_URL", "PORT", "AIWYN_RECEIVER_CALLBACK_TOKEN", "AIWYN_RECEIVER_METRICS_TOKEN", "AIWYN_RECEIVER_TRUSTED_PROXY_HOPS")


def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        if os.environ.get("CI"):  # CI installs it (.ci/tools.sh): a missing one there is a broken CI, not a skip
            pytest.fail("systemd-analyze is not installed, and CI is set (.ci/tools.sh installs it)")
        pytest.skip("systemd-analyze is not installed (Debian: apt-get install systemd)")
    return path


def directives(unit: Path) -> dict[str, list[str]]:
    """Each directive of a unit file with its values, in order (comments and sections left out)."""
    found: dict[str, list[str]] = {}
    for line in unit.read_text().splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            name, value = line.split("=", 1)
            found.setdefault(name.strip(), []).append(value.strip())
    return found


@pytest.mark.parametrize("unit", [pytest.param(unit, id=unit.stem) for unit in UNITS])
def test_systemd_analyze_rates_the_unit_ok(unit: Path) -> None:
    analyzed = subprocess.run(
        [systemd_analyze(), "security", "--offline=yes", "--no-pager", str(unit)], capture_output=True, text=True, timeout=60
    )
    overall = re.search(r"Overall exposure level for \S+: (\d+\.\d+) (\w+)", analyzed.stdout)
    assert overall, analyzed.stdout + analyzed.stderr
    assert float(overall[1]) <= MOST_EXPOSURE, "\n".join(line for line in analyzed.stdout.splitlines() if line.startswith("✗"))


@pytest.mark.parametrize("unit", [pytest.param(unit, id=unit.stem) for unit in UNITS])
def test_the_sandbox_leaves_what_the_service_uses(unit: Path) -> None:
    found = directives(unit)
    assert found["User"] == ["aiwyn"] and found["UMask"] == ["0077"]
    # Redis, PostgreSQL and Aiwyn over TCP or a Unix socket; gunicorn's port.
    assert set(found["RestrictAddressFamilies"][0].split()) == {"AF_INET", "AF_INET6", "AF_UNIX"}
    # Everything read-only but the state directory, where a SQLite database belongs.
    assert found["ProtectSystem"] == ["strict"] and found["StateDirectory"] == ["aiwyn-receiver"]
    assert found["ReadWritePaths"] == ["/var/lib/aiwyn-receiver"]
    assert found["PrivateTmp"] == ["yes"]  # gunicorn's heartbeat files


def test_only_the_web_reads_the_web_settings() -> None:
    web, worker = (directives(unit)["EnvironmentFile"] for unit in UNITS)
    assert web == ["/etc/aiwyn-receiver/env", "/etc/aiwyn-receiver/web.env"]
    assert worker == ["/etc/aiwyn-receiver/env"]


@pytest.mark.parametrize("name", WEB_ONLY)
def test_the_worker_never_reads_a_web_only_setting(name: str) -> None:
    """What a worker runs (workers/, aiwyn_api/, config/ but the settings table and gunicorn's) leaves it alone."""
    field = _FIELDS[name][0]
    uses = re.compile(
        rf"settings\.{field}\b"
        + (r"|\.callback_url\b|\.require_public_url\b" if name in ("PUBLIC_URL", "AIWYN_RECEIVER_CALLBACK_TOKEN") else "")
    )
    skipped = {ROOT / "config" / "settings.py", ROOT / "config" / "gunicorn.conf.py"}
    sources = [path for part in ("workers", "aiwyn_api", "config") for path in (ROOT / part).rglob("*.py") if path not in skipped]
    assert sources and not [str(path.relative_to(ROOT)) for path in sources if uses.search(path.read_text())]
