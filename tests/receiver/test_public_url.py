"""web requires PUBLIC_URL as release does: without it, every active subscription of the account would be trusted (issue 14, finding 4)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import pytest

from config import Settings, SettingsError
from devstack.services import ROOT
from receiver import create_app
from tests.conftest import TEST_SECRETS_KEY
from tests.e2e.stack import base_env


def test_the_app_refuses_to_start_without_public_url(settings: Settings) -> None:
    with pytest.raises(SettingsError, match="missing setting: PUBLIC_URL"):
        create_app(replace(settings, public_url=None))


def test_gunicorn_says_so_in_one_line_and_exits_2(redis_url: str) -> None:
    env = base_env() | {"AIWYN_BASE_URL": "http://127.0.0.1:9", "AIWYN_API_KEY": "k", "AIWYN_RECEIVER_SECRETS_KEY": TEST_SECRETS_KEY, "REDIS_URL": redis_url}
    env.pop("PUBLIC_URL", None)
    result = subprocess.run([sys.executable, "-c", "import runpy; runpy.run_path('config/gunicorn.conf.py')"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "web: missing setting: PUBLIC_URL" in result.stderr
