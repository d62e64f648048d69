"""Every Redis client of the project, built from ``REDIS_URL``: one server, or a Sentinel set's primary.

``redis://``, ``rediss://`` and ``unix://`` name one server (``Redis.from_url``). A Sentinel set is
``redis+sentinel://[user:password@]host:port[,host:port...]/service[/db][?sentinel_password=...]``
(``rediss+sentinel://`` for TLS to the sentinels and the data nodes alike): the client asks the
sentinels for the service's current primary, and again whenever a connection to it fails or it
answers as a replica (redis-py's ``SentinelManagedConnection``), so web, workers and RQ follow a
failover without a restart. Credentials: the URL's user and password are the data nodes'
(primary and replicas); the sentinels get none unless ``sentinel_username`` /
``sentinel_password`` say so, since a sentinel without a password refuses an AUTH outright.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
DEFAULT_SENTINEL_PORT = 26379
SENTINEL_TIMEOUT = 2.0  # seconds for a sentinel to answer: a dead one must not hold a discovery for long
_QUERY_NAMES = {"sentinel_username", "sentinel_password"}


@dataclass(frozen=True)
class SentinelTarget:
    """What a ``redis+sentinel://`` URL names; ``repr`` never shows a password."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    ssl: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)

    def place(self) -> str:
        """``sentinel h:p,h:p/service/db``, for log lines: no credentials."""
        hosts = ",".join(f"[{host}]:{port}" if ":" in host else f"{host}:{port}" for host, port in self.sentinels)
        return f"sentinel {hosts}/{self.service}/{self.db}"


def is_sentinel_url(url: str) -> bool:
    return url.partition("://")[0].lower() in SENTINEL_SCHEMES


def _address(raw: str) -> tuple[str, int]:
    """``host``, ``host:port`` or ``[v6]:port``; errors never echo the URL (it may hold a password)."""
    if raw.startswith("["):
        host, bracket, rest = raw[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError("has a sentinel address with an unclosed [ ]")
        port_text = rest[1:]
    else:
        host, _, port_text = raw.partition(":") if raw.count(":") <= 1 else (raw, "", "")
    if not host:
        raise ValueError("has an empty sentinel address (write host:port, comma-separated)")
    if not port_text:
        return host, DEFAULT_SENTINEL_PORT
    if not port_text.isdigit() or not 0 < int(port_text) <= 65535:
        raise ValueError("has a sentinel port that is not a number from 1 to 65535")
    return host, int(port_text)


def parse_sentinel_url(url: str) -> SentinelTarget:
    """The sentinels, service, database and credentials of a ``redis+sentinel://`` URL; ``ValueError`` saying what is wrong."""
    scheme, separator, rest = url.partition("://")
    if not separator or scheme.lower() not in SENTINEL_SCHEMES:
        raise ValueError("must start with redis+sentinel:// or rediss+sentinel://")
    rest, _, query = rest.partition("?")
    if "#" in rest or "#" in query:
        raise ValueError("must have no fragment (#)")
    netloc, _, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    if not at:
        userinfo, hosts = "", netloc
    sentinels = tuple(_address(part.strip()) for part in hosts.split(","))
    pieces = path.strip("/").split("/") if path.strip("/") else []
    if not pieces or not pieces[0]:
        raise ValueError("must name the service after the sentinels: redis+sentinel://host:port,host:port/service_name[/db]")
    if len(pieces) > 2:
        raise ValueError("has more than /service_name/db after the sentinels")
    db = 0
    if len(pieces) == 2:
        if not pieces[1].isdigit():
            raise ValueError("has a database that is not a whole number (/service_name/db)")
        db = int(pieces[1])
    username, colon, password = userinfo.partition(":")
    options = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=False))
    unknown = sorted(set(options) - _QUERY_NAMES)
    if unknown:
        raise ValueError(f"has an unknown parameter {unknown[0]!r} (only sentinel_username and sentinel_password)")
    return SentinelTarget(
        sentinels=sentinels,
        service=unquote(pieces[0]),
        db=db,
        ssl=scheme.lower() == "rediss+sentinel",
        username=unquote(username) or None,
        password=unquote(password) if colon else None,
        sentinel_username=options.get("sentinel_username") or None,
        sentinel_password=options.get("sentinel_password") or None,
    )


def sentinel_for(target: SentinelTarget, **options: Any) -> Sentinel:
    """A ``Sentinel`` of the set: ``options`` go to the data nodes' connections; the sentinels get short timeouts."""
    # No retries of a sentinel that does not answer: the next one is asked at once (redis-py's
    # default backoff made a dead sentinel cost seconds per discovery of the primary).
    sentinel_kwargs: dict[str, Any] = {
        "socket_connect_timeout": SENTINEL_TIMEOUT, "socket_timeout": SENTINEL_TIMEOUT, "ssl": target.ssl, "retry": Retry(NoBackoff(), 0),
    }  # fmt: skip
    if target.sentinel_password is not None:
        sentinel_kwargs |= {"username": target.sentinel_username, "password": target.sentinel_password}
    node_kwargs: dict[str, Any] = {"db": target.db, "username": target.username, "password": target.password} | options
    if target.ssl:
        node_kwargs["ssl"] = True
    return Sentinel(list(target.sentinels), sentinel_kwargs=sentinel_kwargs, **node_kwargs)


def connect(url: str, **options: Any) -> redis.Redis:
    """A client of the Redis ``url`` names (for a Sentinel set: of its current primary, followed across failovers).

    ``options`` are redis-py's connection arguments (``socket_timeout``...). No I/O happens here.
    """
    if is_sentinel_url(url):
        target = parse_sentinel_url(url)
        return sentinel_for(target, **options).master_for(target.service)
    return redis.Redis.from_url(url, **options)


def online_replicas(connection: redis.Redis) -> int:
    """How many replicas the primary behind ``connection`` has in step (``INFO replication``: state online)."""
    info = connection.info("replication")
    return sum(1 for name, value in info.items() if name.startswith("slave") and isinstance(value, dict) and value.get("state") == "online")


def place(url: str) -> str:
    """Where ``url`` points, for log lines and errors: ``host:port/db``, a socket path, or the sentinels; never a password."""
    if is_sentinel_url(url):
        try:
            return parse_sentinel_url(url).place()
        except ValueError:
            return "sentinel (malformed REDIS_URL)"
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    return f"{parts.hostname or '127.0.0.1'}:{parts.port or 6379}{parts.path or '/0'}"
