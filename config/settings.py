"""The one settings object, read once from the environment at process start.

Names fixed by the design (``AIWYN_BASE_URL``, ``AIWYN_CLIENT_ID``, ``AIWYN_CLIENT_SECRET``,
``AIWYN_API_KEY``, ``PUBLIC_URL``, ``REDIS_URL``, ``DATABASE_URL``, ``PORT``) keep their
names; every other setting starts with ``AIWYN_RECEIVER_``. ``from_env`` is the only place
in the project that reads the environment; everything else is handed a ``Settings``.
"""

from __future__ import annotations

import base64
import binascii
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from config.redis_connection import is_sentinel_url, parse_sentinel_url

PREFIX = "AIWYN_RECEIVER_"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SUBSCRIPTIONS_FILE = Path(__file__).resolve().parent / "subscriptions.toml"


class SettingsError(Exception):
    """One or more settings are missing or malformed; the message names each of them."""


@dataclass(frozen=True)
class Settings:
    """Every tunable of the service; see the README's settings table for meaning and defaults."""

    aiwyn_base_url: str | None = None
    aiwyn_client_id: str | None = field(default=None, repr=False)
    aiwyn_client_secret: str | None = field(default=None, repr=False)
    aiwyn_api_key: str | None = field(default=None, repr=False)
    public_url: str | None = None
    redis_url: str = "redis://127.0.0.1:6379/0"
    # A 2xx only once this many replicas have the delivery (WAIT), within the timeout; else 503.
    redis_min_replicas: int = 0
    redis_replica_timeout_ms: int = 500
    database_url: str = ""
    port: int = 8000
    bind_host: str = "0.0.0.0"
    web_workers: int = field(default_factory=lambda: default_web_workers())
    web_threads: int = 4
    queue_name: str = "aiwyn-events"
    max_body_bytes: int = 1024 * 1024
    timestamp_tolerance: int = 300
    # 36 h: Aiwyn retries an event for 31.2 h at most (aiwyn-contract.md); a longer window only catches
    # what the ledger makes harmless anyway, at ~117 bytes of Redis an id (python -m bench --scale).
    dedupe_ttl: int = 36 * 3600
    secrets_refresh_interval: int = 30
    job_timeout: int = 60
    job_retry_intervals: tuple[int, ...] = (5, 30, 120, 600, 1800)
    http_timeout: float = 10.0
    http_retries: int = 3
    subscriptions_file: Path = DEFAULT_SUBSCRIPTIONS_FILE
    log_level: str = "INFO"
    log_format: str = "text"  # or "json": one JSON object per line, for log pipelines
    metrics_token: str | None = field(default=None, repr=False)  # /metrics and /status then want it as a bearer token
    secrets_key: tuple[str, ...] = field(default=(), repr=False)
    # Deployment: the public address and what stands in front of us.
    allow_http: bool = False
    callback_token: str | None = field(default=None, repr=False)
    trusted_proxy_hops: int = 0
    instance: str = "default"
    # The workers: batches drained from the delivery list, and the handlers' run policy.
    batch_size: int = 200
    batch_max_failures: int = 5  # then the batch is split, and a delivery failing alone is dead-lettered
    accept_deliveries_without_mac: bool = False  # for an upgrade only: items queued before deliveries carried a MAC
    startup_wait: int = 0  # seconds a worker waits for Redis and the database at start; 0: for ever
    handler_modules: tuple[str, ...] = ()
    handler_timeout: float = 30.0
    handler_attempts: int = 5
    handler_retry_delay: float = 10.0
    handler_retry_max_delay: float = 3600.0
    # A run still waiting this long after it was due has lost its job: the worker's sweep requeues it.
    handler_sweep_grace: float = 60.0
    on_give_up: str | None = None  # "package.module:function", called when any handler's run gives up
    # Sync: the full copy at first start, and the scheduled repair (workers/sync).
    backfill_page_size: int = 500
    backfill_on_start: bool = True
    backfill_runs_handlers: bool = False
    reconcile_interval: int = 86400
    schema_check_interval: int = 3600
    # The wire (config/wire.py): what Aiwyn's deliveries and API look like where the contract only assumes.
    wire_profile: str = "standard"
    header_id: str | None = None
    header_timestamp: str | None = None
    header_signature: str | None = None
    header_subscription: str = "aiwyn-subscription-id"
    api_prefix: str = "/api/v1"
    token_path: str | None = None
    subscriptions_path: str | None = None

    def missing_for_api(self) -> list[str]:
        """Names of the settings still needed to call Aiwyn's API."""
        missing = []
        if not self.aiwyn_base_url:
            missing.append("AIWYN_BASE_URL")
        has_client = bool(self.aiwyn_client_id and self.aiwyn_client_secret)
        if not (has_client or self.aiwyn_api_key):
            missing.append("AIWYN_CLIENT_ID and AIWYN_CLIENT_SECRET, or AIWYN_API_KEY")
        return missing

    def require_api(self) -> None:
        """Stop the start with one clear line when Aiwyn's API cannot be reached for lack of settings."""
        missing = self.missing_for_api()
        if missing:
            raise SettingsError("missing setting: " + "; ".join(missing))

    def require_public_url(self) -> str:
        """The public URL is needed only where subscriptions are registered; https, but for development on loopback."""
        if not self.public_url:
            raise SettingsError("missing setting: PUBLIC_URL (the https address Aiwyn can reach)")
        parts = urlsplit(self.public_url)
        if parts.scheme != "https" and not (self.allow_http and parts.hostname in _LOOPBACK):
            raise SettingsError(
                "bad setting: PUBLIC_URL must start with https:// (plain http is allowed only on a loopback host"
                " with AIWYN_RECEIVER_ALLOW_HTTP=1, for development)"
            )
        return self.public_url

    def require_secrets_key(self) -> tuple[str, ...]:
        """The Fernet key(s) for secrets cached in Redis: needed by the web and release processes."""
        if not self.secrets_key:
            raise SettingsError(
                "missing setting: AIWYN_RECEIVER_SECRETS_KEY (a Fernet key that encrypts the signing secrets kept in Redis;"
                " make one with: python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')"
            )
        return self.secrets_key

    @property
    def callback_url(self) -> str:
        """Where Aiwyn must deliver: built from PUBLIC_URL (and the callback token), never from request headers."""
        url = self.require_public_url().rstrip("/") + "/webhooks/aiwyn"
        return f"{url}/{self.callback_token}" if self.callback_token else url


def _url(schemes: tuple[str, ...]) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        parts = urlsplit(raw)
        if parts.scheme not in schemes or not (parts.netloc or parts.path):
            raise ValueError(f"must be a URL starting with {' or '.join(s + '://' for s in schemes)}")
        return raw.rstrip("/")

    return parse


def _base_url(raw: str) -> str:
    # Plain http would carry our API credentials and the signing secrets in clear: loopback only (the emulator).
    url = _url(("https", "http"))(raw)
    if urlsplit(url).scheme == "http" and urlsplit(url).hostname not in _LOOPBACK:
        raise ValueError("must start with https:// (http:// only to a loopback host: 127.0.0.1, ::1, localhost)")
    return url


def _redis_url(raw: str) -> str:
    if is_sentinel_url(raw):
        parse_sentinel_url(raw.strip())  # ValueError says what is wrong, never echoing the URL
        return raw.strip()
    url = _url(("redis", "rediss", "unix", "redis+sentinel"))(raw)
    try:
        urlsplit(url).port  # noqa: B018 - parses the port
    except ValueError:
        raise ValueError("has a port that is not a number from 0 to 65535") from None
    return url


_POSTGRES_SCHEMES = {"postgres", "postgresql", "postgresql+psycopg", "postgresql+psycopg2"}


def _database_url(raw: str) -> str:
    """SQLite or PostgreSQL (``postgres://`` too, as Heroku spells it), always with the psycopg 3 driver we ship."""
    scheme, separator, rest = raw.strip().partition("://")
    if not separator or not (scheme in _POSTGRES_SCHEMES or scheme in ("sqlite", "sqlite+pysqlite")):
        raise ValueError("must start with sqlite:/// or postgresql:// (or postgres://)")
    url = f"postgresql+psycopg://{rest}" if scheme in _POSTGRES_SCHEMES else raw.strip()
    try:
        make_url(url).port  # noqa: B018 - parses the port
    except (ArgumentError, ValueError):
        raise ValueError("is not a database URL (check the port, and that the password is URL-encoded)") from None
    return url


def _public_url(raw: str) -> str:
    # The callback URL is built by appending paths to it: a query or fragment would swallow them.
    parts = urlsplit(raw)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError("must be a URL with a hostname: https://host[:port][/path]")
    if "?" in raw or "#" in raw:
        raise ValueError("must have no query string or fragment")
    return raw.rstrip("/")


def _int(low: int, high: int = 2**31) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        value = int(raw)
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}")
        return value

    return parse


def _positive_float(raw: str) -> float:
    value = float(raw)
    if not (value > 0 and math.isfinite(value)):
        raise ValueError("must be a positive number")
    return value


def _intervals(raw: str) -> tuple[int, ...]:
    values = tuple(int(part) for part in raw.split(",") if part.strip())
    if any(v < 0 for v in values):
        raise ValueError("must be a comma-separated list of non-negative seconds")
    return values


_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def _flag(raw: str) -> bool:
    if raw.lower() in {"1", "true", "yes", "on"}:
        return True
    if raw.lower() in {"0", "false", "no", "off"}:
        return False
    raise ValueError("must be 1 or 0 (true or false)")


def _token(raw: str) -> str:
    if not (16 <= len(raw) <= 128 and all(c.isascii() and (c.isalnum() or c in "-_") for c in raw)):
        raise ValueError("must be 16 to 128 letters, digits, '-' or '_'")
    return raw


def _instance(raw: str) -> str:
    # Written into every subscription's description as "(instance <name>)": keep it plain.
    if not (1 <= len(raw) <= 40 and all(c.isascii() and (c.isalnum() or c in "-_.") for c in raw)):
        raise ValueError("must be 1 to 40 letters, digits, '-', '_' or '.'")
    return raw


def _names(raw: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in raw.split(",") if part.strip())
    if not all(all(piece.isidentifier() for piece in name.split(".")) for name in names):
        raise ValueError("must be a comma-separated list of importable module names")
    return names


def _hook(raw: str) -> str:
    module, _, function = raw.strip().partition(":")
    if not (function.isidentifier() and all(piece.isidentifier() for piece in module.split("."))):
        raise ValueError("must be package.module:function")
    return raw.strip()


def _fernet_keys(raw: str) -> tuple[str, ...]:
    keys = tuple(part.strip() for part in raw.split(",") if part.strip())
    for key in keys:
        try:
            if len(base64.urlsafe_b64decode(key.encode("ascii"))) != 32:
                raise ValueError
        except (ValueError, UnicodeEncodeError, binascii.Error):
            raise ValueError("must be one or more comma-separated Fernet keys (url-safe base64 of 32 bytes)") from None
    return keys


def _log_level(raw: str) -> str:
    level = raw.upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
    return level


def _log_format(raw: str) -> str:
    if raw.lower() not in {"text", "json"}:
        raise ValueError("must be text or json")
    return raw.lower()


def _existing_file(raw: str) -> Path:
    path = Path(raw)
    if not path.is_file():
        raise ValueError(f"no such file: {raw}")
    return path


def _profile(raw: str) -> str:
    if raw.lower() not in {"standard", "svix"}:
        raise ValueError("must be standard or svix")
    return raw.lower()


def _header(raw: str) -> str:
    # An empty AIWYN_RECEIVER_HEADER_SUBSCRIPTION means "the body's subscriptionId" (kept as "").
    name = raw.strip().lower()
    if name and not all(c.isascii() and (c.isalnum() or c in "-_") for c in name):
        raise ValueError("must be an HTTP header name (letters, digits, '-', '_')")
    return name


def _path(raw: str) -> str:
    path = raw.strip().rstrip("/")
    if not path.startswith("/") or any(c in path for c in "?# "):
        raise ValueError("must be a path starting with / (no query string)")
    return path


def _text(raw: str) -> str:
    if not raw.strip():
        raise ValueError("must not be empty")
    return raw.strip()


# environment name -> (field, parser). Secret values are never echoed in an error.
_FIELDS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "AIWYN_BASE_URL": ("aiwyn_base_url", _base_url),
    "AIWYN_CLIENT_ID": ("aiwyn_client_id", _text),
    "AIWYN_CLIENT_SECRET": ("aiwyn_client_secret", _text),
    "AIWYN_API_KEY": ("aiwyn_api_key", _text),
    "PUBLIC_URL": ("public_url", _public_url),
    "REDIS_URL": ("redis_url", _redis_url),
    "DATABASE_URL": ("database_url", _database_url),
    "PORT": ("port", _int(1, 65535)),
    PREFIX + "REDIS_MIN_REPLICAS": ("redis_min_replicas", _int(0, 16)),
    # Below the web's 2 s socket timeout, so a slow WAIT is a 503 with its reason, not a TimeoutError.
    PREFIX + "REDIS_REPLICA_TIMEOUT_MS": ("redis_replica_timeout_ms", _int(1, 1500)),
    PREFIX + "BIND_HOST": ("bind_host", _text),
    PREFIX + "WEB_WORKERS": ("web_workers", _int(1, 64)),
    PREFIX + "WEB_THREADS": ("web_threads", _int(1, 256)),
    PREFIX + "QUEUE": ("queue_name", _text),
    PREFIX + "MAX_BODY_BYTES": ("max_body_bytes", _int(1024)),
    PREFIX + "TIMESTAMP_TOLERANCE": ("timestamp_tolerance", _int(1, 86400)),
    PREFIX + "DEDUPE_TTL": ("dedupe_ttl", _int(60)),
    PREFIX + "SECRETS_REFRESH_INTERVAL": ("secrets_refresh_interval", _int(1, 86400)),
    PREFIX + "JOB_TIMEOUT": ("job_timeout", _int(1, 86400)),
    PREFIX + "JOB_RETRY_INTERVALS": ("job_retry_intervals", _intervals),
    PREFIX + "HTTP_TIMEOUT": ("http_timeout", _positive_float),
    PREFIX + "HTTP_RETRIES": ("http_retries", _int(0, 10)),
    PREFIX + "SUBSCRIPTIONS_FILE": ("subscriptions_file", _existing_file),
    PREFIX + "LOG_LEVEL": ("log_level", _log_level),
    PREFIX + "LOG_FORMAT": ("log_format", _log_format),
    PREFIX + "METRICS_TOKEN": ("metrics_token", _token),
    PREFIX + "SECRETS_KEY": ("secrets_key", _fernet_keys),
    PREFIX + "ALLOW_HTTP": ("allow_http", _flag),
    PREFIX + "CALLBACK_TOKEN": ("callback_token", _token),
    PREFIX + "TRUSTED_PROXY_HOPS": ("trusted_proxy_hops", _int(0, 5)),
    PREFIX + "INSTANCE": ("instance", _instance),
    PREFIX + "BATCH_SIZE": ("batch_size", _int(1, 1000)),
    PREFIX + "BATCH_MAX_FAILURES": ("batch_max_failures", _int(1, 100)),
    PREFIX + "ACCEPT_DELIVERIES_WITHOUT_MAC": ("accept_deliveries_without_mac", _flag),
    PREFIX + "STARTUP_WAIT": ("startup_wait", _int(0, 86400)),
    PREFIX + "HANDLER_MODULES": ("handler_modules", _names),
    PREFIX + "HANDLER_TIMEOUT": ("handler_timeout", _positive_float),
    PREFIX + "HANDLER_ATTEMPTS": ("handler_attempts", _int(1, 100)),
    PREFIX + "HANDLER_RETRY_DELAY": ("handler_retry_delay", _positive_float),
    PREFIX + "HANDLER_RETRY_MAX_DELAY": ("handler_retry_max_delay", _positive_float),
    PREFIX + "HANDLER_SWEEP_GRACE": ("handler_sweep_grace", _positive_float),
    PREFIX + "ON_GIVE_UP": ("on_give_up", _hook),
    PREFIX + "BACKFILL_PAGE_SIZE": ("backfill_page_size", _int(1, 500)),
    PREFIX + "BACKFILL_ON_START": ("backfill_on_start", _flag),
    PREFIX + "BACKFILL_RUNS_HANDLERS": ("backfill_runs_handlers", _flag),
    PREFIX + "RECONCILE_INTERVAL": ("reconcile_interval", _int(0)),
    PREFIX + "SCHEMA_CHECK_INTERVAL": ("schema_check_interval", _int(0)),
    PREFIX + "WIRE_PROFILE": ("wire_profile", _profile),
    PREFIX + "HEADER_ID": ("header_id", _header),
    PREFIX + "HEADER_TIMESTAMP": ("header_timestamp", _header),
    PREFIX + "HEADER_SIGNATURE": ("header_signature", _header),
    PREFIX + "HEADER_SUBSCRIPTION": ("header_subscription", _header),
    PREFIX + "API_PREFIX": ("api_prefix", lambda raw: "" if raw.strip() == "/" else _path(raw)),
    PREFIX + "TOKEN_PATH": ("token_path", _path),
    PREFIX + "SUBSCRIPTIONS_PATH": ("subscriptions_path", _path),
}
_EMPTY_MEANS_SOMETHING = {PREFIX + "HEADER_SUBSCRIPTION"}  # set but empty: not the default
_SECRET_NAMES = {"AIWYN_CLIENT_SECRET", "AIWYN_API_KEY", "DATABASE_URL", "REDIS_URL", PREFIX + "SECRETS_KEY", PREFIX + "CALLBACK_TOKEN", PREFIX + "METRICS_TOKEN"}


def default_web_workers() -> int:
    """Two processes per core (a request waits on Redis part of its time), at most 8."""
    return max(2, min(2 * (os.cpu_count() or 1), 8))


def default_database_url(root: Path = PROJECT_ROOT) -> str:
    """SQLite under the git-ignored ``var/`` folder, so a first run needs no database server."""
    return f"sqlite:///{root / 'var' / 'aiwyn.sqlite3'}"


def from_env(environ: Mapping[str, str]) -> Settings:
    """Build the settings; every bad value is reported together in one ``SettingsError``."""
    values: dict[str, Any] = {}
    errors: list[str] = []
    for name, (attr, parse) in _FIELDS.items():
        raw = environ.get(name)
        if raw is None or (raw == "" and name not in _EMPTY_MEANS_SOMETHING):
            continue
        try:
            values[attr] = parse(raw)
        except ValueError as exc:
            shown = "" if name in _SECRET_NAMES else f" (got {raw!r})"
            errors.append(f"{name}: {exc}{shown}")
    tolerance = values.get("timestamp_tolerance", Settings.timestamp_tolerance)
    if values.get("dedupe_ttl", Settings.dedupe_ttl) < 2 * tolerance:
        # A delivery replayed within the tolerance must still be remembered, or it is queued again.
        errors.append(f"{PREFIX}DEDUPE_TTL: must be at least twice {PREFIX}TIMESTAMP_TOLERANCE ({2 * tolerance} seconds)")
    if errors:
        raise SettingsError("bad setting: " + "; ".join(errors))
    values.setdefault("database_url", default_database_url())
    return Settings(**values)
