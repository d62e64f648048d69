"""gunicorn's settings that security depends on (issue 14, finding 8)."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import version

from devstack.services import ROOT


def test_gunicorn_is_at_least_23_where_request_smuggling_was_fixed() -> None:
    [requirement] = [d for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"] if d.startswith("gunicorn")]
    assert requirement == "gunicorn>=23.0"
    assert int(version("gunicorn").split(".")[0]) >= 23


def test_the_control_socket_is_disabled() -> None:
    assert re.search(r"^control_socket_disable = True$", (ROOT / "config" / "gunicorn.conf.py").read_text(), re.M)
