"""The alert rules as a user loads them: promtool checks and unit-tests them; every metric they name is one we export."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from config import Settings
from config.metrics_contract import LAG_BUCKETS, REQUEST_BUCKETS
from devstack.services import ROOT
from receiver.metrics import families
from receiver.observed import Histogram, Snapshot

RULES = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "aiwyn-receiver.json"


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):  # CI installs it (.ci/tools.sh): a missing one there is a broken CI, not a skip
            pytest.fail(f"{name} is not installed, and CI is set (.ci/tools.sh installs it)")
        pytest.skip(f"{name} is not installed (Debian: apt-get install prometheus)")
    return path


def exported_names() -> set[str]:
    """The series names /metrics can show (with a histogram's and a counter's suffixes)."""
    empty = Snapshot(0.0, {}, Histogram(REQUEST_BUCKETS, (0,) * 14, 0), 0, 0, 0.0, {}, Histogram(LAG_BUCKETS, (0,) * 18, 0), {}, {}, {}, 0, 0)
    names = set()
    for family in families(empty, Settings()):
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}.get(family.type, ("",))
        names |= {family.name + suffix for suffix in suffixes}
    return names


def test_promtool_checks_the_rules_and_passes_their_unit_tests() -> None:
    promtool = tool("promtool")
    checked = subprocess.run([promtool, "check", "rules", "alerts.yml"], cwd=RULES, capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run([promtool, "test", "rules", "alerts_test.yml"], cwd=RULES, capture_output=True, text=True, timeout=120)
    assert tested.returncode == 0, tested.stdout + tested.stderr


@pytest.mark.parametrize("path", [pytest.param(RULES / "alerts.yml", id="alerts"), pytest.param(DASHBOARD, id="dashboard")])
def test_every_metric_named_is_one_we_export(path: Path) -> None:
    named = set(re.findall(r"\baiwyn_[a-z_]+\b", path.read_text()))
    assert named and named <= exported_names(), named - exported_names()


def test_every_alert_has_a_runbook_line_in_the_readme() -> None:
    alerts = re.findall(r"- alert: (\w+)", (RULES / "alerts.yml").read_text())
    readme = (ROOT / "README.md").read_text()
    assert alerts and all(f"`{alert}`" in readme for alert in alerts)
