"""Settings: defaults, every bad value reported at once, no secret echoed, one reader of the environment."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from config.settings import PROJECT_ROOT, SettingsError, from_env
from config.subscriptions import load_subscriptions


def test_defaults_need_nothing() -> None:
    settings = from_env({})
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert settings.database_url == f"sqlite:///{PROJECT_ROOT / 'var' / 'aiwyn.sqlite3'}"
    assert (settings.timestamp_tolerance, settings.max_body_bytes, settings.port) == (300, 1024 * 1024, 8000)


def test_values_are_typed() -> None:
    settings = from_env({"PORT": "9000", "AIWYN_RECEIVER_JOB_RETRY_INTERVALS": "1, 2,3", "PUBLIC_URL": "https://x.example/"})
    assert settings.port == 9000 and settings.job_retry_intervals == (1, 2, 3)
    assert settings.callback_url == "https://x.example/webhooks/aiwyn"


def test_every_bad_value_is_named_in_one_error_and_secrets_are_not_echoed() -> None:
    with pytest.raises(SettingsError) as caught:
        from_env({"PORT": "http", "AIWYN_RECEIVER_TIMESTAMP_TOLERANCE": "-1", "REDIS_URL": "mysql://user:hunter2@h/0",
                  "AIWYN_RECEIVER_LOG_LEVEL": "LOUD"})  # fmt: skip
    message = str(caught.value)
    for name in ("PORT", "AIWYN_RECEIVER_TIMESTAMP_TOLERANCE", "REDIS_URL", "AIWYN_RECEIVER_LOG_LEVEL"):
        assert name in message
    assert "hunter2" not in message


def test_api_settings_are_required_where_the_api_is_called() -> None:
    with pytest.raises(SettingsError, match="AIWYN_BASE_URL.*AIWYN_CLIENT_ID and AIWYN_CLIENT_SECRET, or AIWYN_API_KEY"):
        from_env({}).require_api()
    from_env({"AIWYN_BASE_URL": "http://127.0.0.1:8700", "AIWYN_API_KEY": "k"}).require_api()
    with pytest.raises(SettingsError, match="PUBLIC_URL"):
        _ = from_env({}).callback_url


def test_the_default_subscription_covers_every_type_custom_ones_too_and_every_operation() -> None:
    (spec,) = load_subscriptions(from_env({}).subscriptions_file)
    assert spec.entity_types == ("*",)
    assert spec.operations == ("CREATE", "UPDATE", "DELETE")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "no \\[\\[subscription\\]\\] entry"),
        ('[[subscription]]\nname = "aiwyn-receiver-a"\nentity_types = []\n', "entity_types"),
        ('[[subscription]]\nname = "aiwyn-receiver-a"\nentity_types = ["client"]\noperations = ["MERGE"]\n', "operations"),
        ('[[subscription]]\nname = "aiwyn-receiver-a"\nentity_types = ["client"]\n[[subscription]]\nname = "aiwyn-receiver-a"\nentity_types = ["staff"]\n', "unique"),
        ('[[subscription]]\nname = "crm-sync"\nentity_types = ["client"]\n', "must start with 'aiwyn-receiver-'"),
        ("[[subscription]\n", "subscriptions file"),
        ('[[subscription]]\nname = "aiwyn-receiver-a"\nentity_types = ["client"]\nsignature_algorithm = "v2"\n', "signature_algorithm"),
    ],
)
def test_a_bad_subscriptions_file_names_the_problem(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "subs.toml"
    path.write_text(text)
    with pytest.raises(SettingsError, match=problem):
        load_subscriptions(path)


def test_only_config_reads_the_service_environment() -> None:
    """The service's parts get a Settings object; only config/ reads os.environ (devstack and tests launch processes)."""
    offenders = [
        str(path.relative_to(PROJECT_ROOT))
        for part in ("receiver", "workers")
        for path in (PROJECT_ROOT / part).rglob("*.py")
        if re.search(r"os\.environ|os\.getenv", path.read_text())
    ]
    assert offenders == []


@pytest.mark.parametrize(
    ("url", "allow_http", "ok"),
    [
        ("https://hooks.example.com", False, True),
        ("http://hooks.example.com", False, False),
        ("http://hooks.example.com", True, False),  # the development flag is for loopback only
        ("http://127.0.0.1:8000", False, False),
        ("http://127.0.0.1:8000", True, True),
        ("http://localhost:8000", True, True),
    ],
)
def test_public_url_must_be_https_but_on_loopback_in_development(url: str, allow_http: bool, ok: bool) -> None:
    settings = from_env({"PUBLIC_URL": url, "AIWYN_RECEIVER_ALLOW_HTTP": "1" if allow_http else "0"})
    if ok:
        assert settings.callback_url == url + "/webhooks/aiwyn"
    else:
        with pytest.raises(SettingsError, match="PUBLIC_URL must start with https://"):
            settings.callback_url  # noqa: B018


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("https:///webhooks", id="no-hostname"),
        pytest.param("https://:8443", id="port-only"),
        pytest.param("hooks.example.com", id="no-scheme"),
        pytest.param("https://hooks.example.com/?a=1", id="query"),
        pytest.param("https://hooks.example.com/?", id="empty-query"),
        pytest.param("https://hooks.example.com/#x", id="fragment"),
    ],
)
def test_public_url_needs_a_hostname_and_no_query_or_fragment(url: str) -> None:
    with pytest.raises(SettingsError, match="PUBLIC_URL: must"):
        from_env({"PUBLIC_URL": url})


def test_the_instance_names_the_deployment() -> None:
    assert from_env({}).instance == "default"
    assert from_env({"AIWYN_RECEIVER_INSTANCE": "eu-prod.2"}).instance == "eu-prod.2"
    for bad in ("two words", "x" * 41, "a(b)"):
        with pytest.raises(SettingsError, match="AIWYN_RECEIVER_INSTANCE"):
            from_env({"AIWYN_RECEIVER_INSTANCE": bad})


def test_the_callback_token_is_a_path_segment_and_never_echoed() -> None:
    settings = from_env({"PUBLIC_URL": "https://h.example", "AIWYN_RECEIVER_CALLBACK_TOKEN": "t0ken-of-24-characters__"})
    assert settings.callback_url == "https://h.example/webhooks/aiwyn/t0ken-of-24-characters__"
    assert "t0ken" not in repr(settings)
    with pytest.raises(SettingsError) as caught:
        from_env({"AIWYN_RECEIVER_CALLBACK_TOKEN": "short/secret"})
    assert "short/secret" not in str(caught.value) and "AIWYN_RECEIVER_CALLBACK_TOKEN" in str(caught.value)


@pytest.mark.parametrize(
    ("name", "raw", "problem"),
    [
        pytest.param("REDIS_URL", "redis://:hunter2@127.0.0.1:63x9/0", "REDIS_URL: has a port that is not a number", id="redis-bad-port"),
        pytest.param("DATABASE_URL", "mysql://u:hunter2@h/db", "DATABASE_URL: must start with sqlite:/// or postgresql://", id="database-other-kind"),
        pytest.param("DATABASE_URL", "postgresql://u:hunter2@h:54x2/db", "DATABASE_URL: is not a database URL", id="database-bad-port"),
        pytest.param("AIWYN_RECEIVER_BATCH_MAX_FAILURES", "0", "AIWYN_RECEIVER_BATCH_MAX_FAILURES: must be between 1 and 100", id="max-failures"),
        pytest.param("AIWYN_RECEIVER_STARTUP_WAIT", "-1", "AIWYN_RECEIVER_STARTUP_WAIT: must be between 0", id="startup-wait"),
    ],
)
def test_a_malformed_url_or_number_is_named_with_what_is_wrong(name: str, raw: str, problem: str) -> None:
    with pytest.raises(SettingsError) as caught:
        from_env({name: raw})
    assert problem in str(caught.value) and "hunter2" not in str(caught.value)


@pytest.mark.parametrize("scheme", ["postgres", "postgresql", "postgresql+psycopg2", "postgresql+psycopg"])
def test_postgres_urls_are_accepted_and_use_the_driver_we_ship(scheme: str) -> None:
    assert from_env({"DATABASE_URL": f"{scheme}://u:p@db.example:5432/aiwyn"}).database_url == "postgresql+psycopg://u:p@db.example:5432/aiwyn"


def test_outage_settings_have_defaults() -> None:
    settings = from_env({})
    assert (settings.batch_max_failures, settings.startup_wait) == (5, 0)


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        pytest.param("https://demo.api.aiwyn.ai", True, id="https"),
        pytest.param("http://127.0.0.1:8700", True, id="http-loopback"),
        pytest.param("http://localhost:8700", True, id="http-localhost"),
        pytest.param("http://demo.api.aiwyn.ai", False, id="http-remote"),
        pytest.param("http://10.0.0.5:8700", False, id="http-private"),
    ],
)
def test_aiwyn_base_url_is_https_but_to_loopback(url: str, ok: bool) -> None:
    if ok:
        assert from_env({"AIWYN_BASE_URL": url}).aiwyn_base_url == url
    else:
        with pytest.raises(SettingsError, match="AIWYN_BASE_URL: must start with https://"):
            from_env({"AIWYN_BASE_URL": url})


def test_the_dedupe_window_outlasts_twice_the_timestamp_tolerance() -> None:
    with pytest.raises(SettingsError, match="AIWYN_RECEIVER_DEDUPE_TTL: must be at least twice AIWYN_RECEIVER_TIMESTAMP_TOLERANCE"):
        from_env({"AIWYN_RECEIVER_DEDUPE_TTL": "500"})  # a replay 5 minutes old either way must still be a duplicate
    with pytest.raises(SettingsError, match="DEDUPE_TTL"):
        from_env({"AIWYN_RECEIVER_DEDUPE_TTL": "3600", "AIWYN_RECEIVER_TIMESTAMP_TOLERANCE": "3000"})
    assert from_env({"AIWYN_RECEIVER_DEDUPE_TTL": "600"}).dedupe_ttl == 600
