"""Whether anyone on the network can write to our Redis: writing to it queues deliveries and jobs.

Checked once at a process's start and only warned about: a Redis on a loopback address or a
Unix socket is reached only from this host, and one that refuses a connection without
credentials is guarded. Anything else (no password, no ACL user, on a routable address) lets
whoever reaches it queue work for the workers. For a Sentinel set, the sentinels are checked
the same way (an open sentinel lets anyone point our clients at a Redis of theirs), and so are
the data nodes they name: the primary, and the replicas that may become it.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

import redis

from config.redis_connection import is_sentinel_url, parse_sentinel_url, sentinel_for

_LOOPBACK_NAMES = {"localhost", "localhost.localdomain"}


def _loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _answers_anyone(host: str, port: int, ssl: bool, timeout: float) -> bool:
    """True when ``host:port`` is routable and answers a PING without credentials."""
    if _loopback(host):
        return False
    anonymous = redis.Redis(host=host, port=port, ssl=ssl, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        anonymous.ping()
    except redis.RedisError:
        return False  # refused without credentials (or unreachable: the start-up line says so)
    finally:
        anonymous.close()
    return True


def _advice(what: str) -> str:
    return (
        f"{what} without a password on a non-loopback address: anyone who reaches it"
        " can queue deliveries and jobs; give it a password or an ACL user (and TLS, rediss://, off a private network)"
    )


def open_redis_warning(url: str, timeout: float = 2.0) -> str | None:
    """One sentence when the Redis at ``url`` is on a non-loopback address and answers without credentials."""
    if is_sentinel_url(url):
        return _open_sentinel_warning(url, timeout)
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 6379
    if parts.scheme == "unix" or not _answers_anyone(host, port, parts.scheme == "rediss", timeout):
        return None
    return _advice(f"Redis at {host}:{port} accepts connections")


def _open_sentinel_warning(url: str, timeout: float) -> str | None:
    target = parse_sentinel_url(url)
    open_sentinels = [f"{host}:{port}" for host, port in target.sentinels if _answers_anyone(host, port, target.ssl, timeout)]
    nodes: list[tuple[str, int]] = []
    sentinel = sentinel_for(target)
    try:
        nodes.append(sentinel.discover_master(target.service))
        nodes.extend(sentinel.discover_slaves(target.service))
    except redis.RedisError:
        pass  # no primary known now: the start-up line says so; the sentinels are still checked
    finally:
        sentinel.close()
    open_nodes = [f"{host}:{port}" for host, port in nodes if _answers_anyone(host, int(port), target.ssl, timeout)]
    problems = []
    if open_nodes:
        problems.append(_advice(f"Redis at {', '.join(open_nodes)} (service {target.service}) accepts connections"))
    if open_sentinels:
        problems.append(
            f"Sentinel at {', '.join(open_sentinels)} accepts connections without a password on a non-loopback address:"
            " anyone who reaches it can point the service at a Redis of theirs; set requirepass on the sentinels"
            " and sentinel_password in REDIS_URL"
        )
    return "; ".join(problems) or None
