"""Whether anyone on the network can write to our Redis: writing to it queues deliveries and jobs.

Checked once at a process's start and only warned about: a Redis on a loopback address or a
Unix socket is reached only from this host, and one that refuses a connection without
credentials is guarded. Anything else (no password, no ACL user, on a routable address) lets
whoever reaches it queue work for the workers.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

import redis

_LOOPBACK_NAMES = {"localhost", "localhost.localdomain"}


def _loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def open_redis_warning(url: str, timeout: float = 2.0) -> str | None:
    """One sentence when the Redis at ``url`` is on a non-loopback address and answers without credentials."""
    parts = urlsplit(url)
    if parts.scheme == "unix" or _loopback(parts.hostname or "127.0.0.1"):
        return None
    host, port = parts.hostname or "127.0.0.1", parts.port or 6379
    anonymous = redis.Redis(host=host, port=port, ssl=parts.scheme == "rediss", socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        anonymous.ping()
    except redis.RedisError:
        return None  # refused without credentials (or unreachable: the start-up line says so)
    finally:
        anonymous.close()
    return (
        f"Redis at {host}:{port} accepts connections without a password on a non-loopback address: anyone who reaches it"
        " can queue deliveries and jobs; give it a password or an ACL user (and TLS, rediss://, off a private network)"
    )
