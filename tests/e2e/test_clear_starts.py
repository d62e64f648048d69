"""Every process turns a bad setting into one line and exit code 2, and says at start whether
Redis and the database answer; a worker waits for them instead of exiting."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy

from devstack.services import ROOT, Process, free_port, start_redis, wait_until
from tests.databases import POSTGRES_URL
from tests.e2e.stack import SECRETS_KEY, base_env
from workers.migrate import upgrade

pytestmark = pytest.mark.e2e

WEB = [sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.conf.py", "receiver:create_app()"]
COMMANDS = {
    "web": WEB,
    "worker": [sys.executable, "-m", "workers", "work"],
    "release-migrate": [sys.executable, "-m", "workers", "migrate"],
    "release-register": [sys.executable, "-m", "receiver", "register"],
    "cli": [sys.executable, "-m", "workers", "dead-letter", "list"],
}


def web_env(**extra: str) -> dict[str, str]:
    return base_env() | {"AIWYN_BASE_URL": "http://127.0.0.1:9", "AIWYN_API_KEY": "k", "PUBLIC_URL": "https://hooks.example.test",
                         "AIWYN_RECEIVER_SECRETS_KEY": SECRETS_KEY, "PORT": str(free_port()), "AIWYN_RECEIVER_BIND_HOST": "127.0.0.1",
                         "AIWYN_RECEIVER_WEB_WORKERS": "1"} | extra  # fmt: skip


def run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("process", list(COMMANDS))
@pytest.mark.parametrize(
    ("setting", "value", "said"),
    [
        pytest.param("REDIS_URL", "redis://:hunter2@127.0.0.1:63x9/0", "REDIS_URL: has a port that is not a number", id="redis-port"),
        pytest.param("DATABASE_URL", "mysql://u:hunter2@h/db", "DATABASE_URL: must start with sqlite:/// or postgresql://", id="database-kind"),
    ],
)
def test_a_bad_setting_is_one_line_and_exit_code_2(process: str, setting: str, value: str, said: str) -> None:
    result = run(COMMANDS[process], web_env(**{setting: value}))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and said in lines[0], result.stderr
    assert "Traceback" not in result.stderr and "hunter2" not in result.stderr + result.stdout


def test_web_without_a_secrets_key_says_so_once_and_exits_2() -> None:
    env = web_env()
    del env["AIWYN_RECEIVER_SECRETS_KEY"]
    result = run(WEB, env)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "missing setting: AIWYN_RECEIVER_SECRETS_KEY" in result.stderr


def test_a_worker_without_a_secrets_key_says_so_once_and_exits_2(redis_url: str) -> None:
    """The worker checks the deliveries' MAC, keyed from AIWYN_RECEIVER_SECRETS_KEY."""
    result = run(COMMANDS["worker"], base_env() | {"REDIS_URL": redis_url})
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "missing setting: AIWYN_RECEIVER_SECRETS_KEY" in result.stderr


def test_a_worker_against_a_database_that_does_not_exist_stops_at_once_naming_it(redis_url: str, tmp_path: Path) -> None:
    result = run(COMMANDS["worker"], base_env() | {"REDIS_URL": redis_url, "DATABASE_URL": f"sqlite:///{tmp_path / 'nowhere.sqlite3'}", "AIWYN_RECEIVER_SECRETS_KEY": SECRETS_KEY})
    assert result.returncode == 2
    assert f"DATABASE_URL: database sqlite {tmp_path / 'nowhere.sqlite3'} does not answer: no such file" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.skipif(not POSTGRES_URL, reason="TEST_POSTGRES_URL is not set")
def test_postgres_scheme_is_accepted_and_a_missing_postgres_database_is_named(redis_url: str) -> None:
    url = sqlalchemy.engine.make_url(POSTGRES_URL).set(database="aiwyn_no_such_database")
    spelled = url.render_as_string(hide_password=False).replace("postgresql://", "postgres://", 1)
    result = run(COMMANDS["worker"], base_env() | {"REDIS_URL": redis_url, "DATABASE_URL": spelled, "AIWYN_RECEIVER_SECRETS_KEY": SECRETS_KEY})
    assert result.returncode == 2, result.stderr
    assert "DATABASE_URL: database postgresql" in result.stderr and 'database "aiwyn_no_such_database" does not exist' in result.stderr
    assert "NoSuchModuleError" not in result.stderr and "Traceback" not in result.stderr


def test_web_and_worker_say_at_start_whether_redis_and_the_database_answer(redis_url: str, tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'mirror.sqlite3'}"
    upgrade(database_url)
    env = web_env(REDIS_URL=redis_url, DATABASE_URL=database_url)
    port = redis_url.rsplit(":", 1)[1].split("/")[0]
    expected = f"Redis at 127.0.0.1:{port}/0 answers; database sqlite {tmp_path / 'mirror.sqlite3'} answers"
    web = Process("web", WEB, env, tmp_path / "web.log")
    worker = Process("worker", COMMANDS["worker"], env, tmp_path / "worker.log")
    try:
        wait_until(lambda: expected in web.output(), 30, "the web's start line", web)
        wait_until(lambda: expected in worker.output(), 30, "the worker's start line", worker)
    finally:
        web.stop()
        worker.stop()


def test_a_worker_started_while_redis_is_down_waits_for_it(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'mirror.sqlite3'}"
    upgrade(database_url)
    port = free_port()
    env = base_env() | {"REDIS_URL": f"redis://127.0.0.1:{port}/0", "DATABASE_URL": database_url, "AIWYN_RECEIVER_SECRETS_KEY": SECRETS_KEY}
    gives_up = run(COMMANDS["worker"], env | {"AIWYN_RECEIVER_STARTUP_WAIT": "2"})
    assert gives_up.returncode == 1 and "gave up after AIWYN_RECEIVER_STARTUP_WAIT=2s" in gives_up.stderr
    assert gives_up.stderr.count("waiting up to 2s") == 1  # said once, not per attempt

    worker = Process("worker", COMMANDS["worker"], env, tmp_path / "worker.log")
    redis_process = None
    try:
        wait_until(lambda: f"Redis at 127.0.0.1:{port}/0 does not answer" in worker.output() and "waiting for ever" in worker.output(), 30, "the worker saying it waits", worker)
        redis_process, _ = start_redis(tmp_path / "redis", port=port)
        wait_until(lambda: "Listening on" in worker.output() or "listening on" in worker.output().lower(), 30, "the worker's start after Redis came", worker)
    finally:
        worker.stop()
        if redis_process is not None:
            redis_process.stop()
