"""Whether Redis keeps what we acknowledge: a 2xx is sent once a delivery is in Redis, so a
Redis that forgets on restart, or evicts keys when full, loses events Aiwyn will never resend.

Checked once at start, and only warned about: the development and test Redis keep nothing on
disk on purpose, and a managed Redis may refuse ``CONFIG GET`` while being durable all the same.
"""

from __future__ import annotations

import redis


def durability_warnings(connection: redis.Redis) -> list[str]:
    """One sentence per setting of this Redis that can lose acknowledged deliveries."""
    try:
        config = {**connection.config_get("appendonly"), **connection.config_get("maxmemory-policy")}
    except redis.ResponseError:
        return ["Redis refuses CONFIG GET, so its durability is not checked: it must run with appendonly yes and maxmemory-policy noeviction"]
    found = []
    if config.get("appendonly") != "yes":
        found.append("Redis runs with appendonly no: a restart of Redis loses the deliveries acknowledged but not yet mirrored (set appendonly yes)")
    if config.get("maxmemory-policy", "noeviction") != "noeviction":
        found.append(f"Redis's maxmemory-policy is {config['maxmemory-policy']}: when full it may evict queued deliveries (set noeviction)")
    return found
