"""Settings from the environment and flags, and the `python -m emulator` command."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from emulator import Settings, SettingsError
from emulator.settings import CONTRACT_RETRY_SCHEDULE

PROJECT = Path(__file__).resolve().parents[2]


def test_defaults_follow_the_contract():
    settings = Settings.from_env({})
    assert (settings.host, settings.port) == ("127.0.0.1", 8700)
    assert (settings.client_id, settings.client_secret, settings.api_key) == ("local-client", "local-secret", "local-api-key")
    assert settings.retry_schedule == CONTRACT_RETRY_SCHEDULE == (5, 30, 120, 600, 3600, 21600, 86400)
    assert (settings.token_ttl, settings.delivery_timeout, settings.sender_threads, settings.secret_grace) == (3600, 10, 4, 86400)


def test_values_are_parsed_and_flags_win_over_the_environment():
    env = {"EMULATOR_RETRY_SCHEDULE": "0.2, 0.5,1", "EMULATOR_PORT": "9000", "EMULATOR_DUPLICATE": "true", "OTHER": "x"}
    settings = Settings.from_env(env, {"EMULATOR_PORT": "9100"})
    assert settings.retry_schedule == (0.2, 0.5, 1.0)
    assert settings.port == 9100 and settings.duplicate is True
    assert Settings.from_env({"EMULATOR_RETRY_SCHEDULE": ""}).retry_schedule == ()


def test_every_bad_setting_is_named_and_secrets_are_not_echoed():
    env = {
        "EMULATOR_TOKEN_TTL": "0",
        "EMULATOR_RETRY_SCHEDULE": "5,soon",
        "EMULATOR_SENDER_THREADS": "many",
        "EMULATOR_CLIENT_SECRET": "",
        "EMULATOR_DELIVERY_TIMEOUT": "nan",
    }
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env)
    message = str(caught.value)
    for name in env:
        assert name in message
    assert "\n" not in message


def test_secrets_stay_out_of_the_settings_repr():
    settings = Settings(client_secret="s3cr3t-value", api_key="k3y-value")
    assert "s3cr3t-value" not in repr(settings) and "k3y-value" not in repr(settings)


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "emulator", *args],
        cwd=PROJECT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_the_command_exits_with_one_line_on_a_bad_setting():
    process = _run("--port", "0", env={"EMULATOR_TOKEN_TTL": "soon"})
    out, err = process.communicate(timeout=20)
    assert process.returncode == 2
    assert out == ""
    assert err.strip().count("\n") == 0 and "EMULATOR_TOKEN_TTL" in err


def test_the_command_serves_announces_its_url_and_stops_on_sigterm():
    process = _run("--port", "0", "--retry-schedule", "0.1", "--client-secret", "cli-secret-value")
    try:
        line = process.stdout.readline()
        assert line.startswith("emulator listening on http://127.0.0.1:")
        base_url = line.split()[-1]
        with httpx.Client(base_url=base_url, trust_env=False) as http:
            assert http.get("/_emulator/health").json() == {"ok": True}
            token = http.post(
                "/api/v1/auth/token",
                data={"grant_type": "client_credentials", "client_id": "local-client", "client_secret": "cli-secret-value"},
            )
            assert token.status_code == 200
            access_token = token.json()["access_token"]
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0
    assert "cli-secret-value" not in err and access_token not in err
    assert "emulator stopped" in err


def test_the_command_exits_with_one_line_when_the_port_is_taken():
    with socket.create_server(("127.0.0.1", 0)) as taken:
        process = _run("--port", str(taken.getsockname()[1]))
        out, err = process.communicate(timeout=20)
    assert process.returncode == 1
    assert out == ""
    assert err.strip().count("\n") == 0 and "cannot listen on 127.0.0.1:" in err
