"""``REDIS_URL`` may name a Sentinel set (issue 19): its parsing, the settings' refusals, and the clients built from it."""

from __future__ import annotations

import subprocess
import sys

import pytest
import redis
from redis.sentinel import SentinelConnectionPool

from config import SettingsError
from config.reachability import redis_place
from config.redis_connection import SentinelTarget, connect, parse_sentinel_url, place
from config.settings import from_env
from devstack.services import ROOT
from tests.e2e.stack import base_env


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        pytest.param(
            "redis+sentinel://10.0.0.1:26379,10.0.0.2:26380,sentinel-c/aiwyn",
            SentinelTarget(sentinels=(("10.0.0.1", 26379), ("10.0.0.2", 26380), ("sentinel-c", 26379)), service="aiwyn"),
            id="three-sentinels-default-port-and-db",
        ),
        pytest.param(
            "redis+sentinel://:p%40ss@h1:1,[::1]:2/svc/3",
            SentinelTarget(sentinels=(("h1", 1), ("::1", 2)), service="svc", db=3, password="p@ss"),
            id="password-ipv6-db",
        ),
        pytest.param(
            "rediss+sentinel://aiwyn:pw@h1/svc/0?sentinel_username=watch&sentinel_password=s%26pw",
            SentinelTarget(sentinels=(("h1", 26379),), service="svc", ssl=True, username="aiwyn", password="pw", sentinel_username="watch", sentinel_password="s&pw"),
            id="tls-acl-user-and-sentinel-credentials",
        ),
    ],
)
def test_a_sentinel_url_names_the_sentinels_the_service_the_db_and_whose_credentials(url: str, expected: SentinelTarget) -> None:
    assert parse_sentinel_url(url) == expected


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        pytest.param("redis+sentinel://h1:26379", "must name the service", id="no-service"),
        pytest.param("redis+sentinel://h1:26379/", "must name the service", id="empty-service"),
        pytest.param("redis+sentinel:///svc", "empty sentinel address", id="no-sentinel"),
        pytest.param("redis+sentinel://h1:26379,,h2/svc", "empty sentinel address", id="empty-between-commas"),
        pytest.param("redis+sentinel://h1:2637x/svc", "sentinel port that is not a number", id="bad-port"),
        pytest.param("redis+sentinel://h1:70000/svc", "sentinel port that is not a number", id="port-too-big"),
        pytest.param("redis+sentinel://[::1:26379/svc", "unclosed", id="unclosed-ipv6"),
        pytest.param("redis+sentinel://h1/svc/zero", "database that is not a whole number", id="bad-db"),
        pytest.param("redis+sentinel://h1/svc/0/extra", "more than /service_name/db", id="extra-path"),
        pytest.param("redis+sentinel://h1/svc?password=x", "unknown parameter 'password'", id="unknown-parameter"),
    ],
)
def test_a_malformed_sentinel_url_is_one_line_naming_the_setting_and_never_the_password(url: str, problem: str) -> None:
    secret_url = url.replace("://", "://:hunter2@", 1)
    with pytest.raises(SettingsError) as caught:
        from_env({"REDIS_URL": secret_url})
    message = str(caught.value)
    assert message.startswith("bad setting: REDIS_URL: ") and problem in message, message
    assert "hunter2" not in message and "\n" not in message


def test_a_process_given_a_malformed_sentinel_url_exits_2_with_one_line() -> None:
    env = base_env() | {"REDIS_URL": "redis+sentinel://:hunter2@h1:26379"}
    result = subprocess.run([sys.executable, "-m", "workers", "work"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "REDIS_URL: must name the service" in result.stderr and "hunter2" not in result.stderr + result.stdout


def test_the_replica_settings_are_checked() -> None:
    settings = from_env({"REDIS_URL": "redis+sentinel://h1,h2,h3/aiwyn/2", "AIWYN_RECEIVER_REDIS_MIN_REPLICAS": "1"})
    assert (settings.redis_url, settings.redis_min_replicas, settings.redis_replica_timeout_ms) == ("redis+sentinel://h1,h2,h3/aiwyn/2", 1, 500)
    with pytest.raises(SettingsError, match="AIWYN_RECEIVER_REDIS_MIN_REPLICAS: must be between 0 and 16"):
        from_env({"AIWYN_RECEIVER_REDIS_MIN_REPLICAS": "-1"})
    # WAIT 0 would block for ever, and a wait past the web's 2 s socket timeout would be a TimeoutError.
    for bad in ("0", "2000"):
        with pytest.raises(SettingsError, match="AIWYN_RECEIVER_REDIS_REPLICA_TIMEOUT_MS: must be between 1 and 1500"):
            from_env({"AIWYN_RECEIVER_REDIS_REPLICA_TIMEOUT_MS": bad})


def test_log_lines_name_the_sentinels_and_service_without_a_password() -> None:
    url = "redis+sentinel://:hunter2@10.0.0.1:26379,[::1]:26380/aiwyn/1?sentinel_password=hunter3"
    assert redis_place(url) == place(url) == "sentinel 10.0.0.1:26379,[::1]:26380/aiwyn/1"
    assert redis_place("redis://:hunter2@cache.internal:6380/2") == "cache.internal:6380/2"
    assert "hunter" not in repr(parse_sentinel_url(url))


def test_a_sentinel_client_follows_the_service_and_a_plain_one_the_server() -> None:
    sentinel_client = connect("redis+sentinel://:pw@h1:26379,h2:26380/aiwyn/4?sentinel_password=spw", socket_timeout=2)
    pool = sentinel_client.connection_pool
    assert isinstance(pool, SentinelConnectionPool) and pool.service_name == "aiwyn"
    assert (pool.connection_kwargs["db"], pool.connection_kwargs["password"], pool.connection_kwargs["socket_timeout"]) == (4, "pw", 2)
    watchers = pool.sentinel_manager.sentinels
    assert [w.connection_pool.connection_kwargs["port"] for w in watchers] == [26379, 26380]
    assert {w.connection_pool.connection_kwargs["password"] for w in watchers} == {"spw"}
    # A sentinel that does not answer is not retried with back-off: the next one is asked at once.
    assert {w.connection_pool.connection_kwargs["retry"].get_retries() for w in watchers} == {0}
    with pytest.raises(redis.ConnectionError, match="No master found for 'aiwyn'"):
        connect("redis+sentinel://127.0.0.1:1,127.0.0.1:2/aiwyn").ping()  # nothing listens there
    plain = connect("redis://127.0.0.1:6390/5")
    assert isinstance(plain, redis.Redis) and plain.connection_pool.connection_kwargs["db"] == 5
