"""Counting refused deliveries in Redis (accepted ones are counted by the script that stores them).

Off the hot path: a refusal costs one pipelined round trip. When Redis cannot take the count
(a 503 is Redis failing), the process keeps it and adds it with the next count that gets
through, so the figures end up exact once Redis is back, whichever process answered.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter

import redis

from config.metrics_contract import REQUEST_BUCKETS, SUM_FIELD, bucket_field, field, micros, request_duration_key, requests_key

log = logging.getLogger(__name__)


class RequestCounts:
    """One per web process: adds refusals to the shared counters, holding them while Redis is away."""

    def __init__(self, connection: redis.Redis, queue: str) -> None:
        self._connection = connection
        self._requests = requests_key(queue)
        self._duration = request_duration_key(queue)
        self._lock = threading.Lock()
        self._held: Counter[tuple[str, str]] = Counter()  # (key, field) -> increment not yet in Redis

    def rejected(self, status: int, reason: str, seconds: float) -> None:
        """Count one refused delivery and how long it took to refuse it."""
        with self._lock:
            self._held[(self._requests, field(str(status), reason))] += 1
            self._held[(self._duration, bucket_field(REQUEST_BUCKETS, seconds))] += 1
            self._held[(self._duration, SUM_FIELD)] += micros(seconds)
            counts, self._held = self._held, Counter()
        try:
            pipe = self._connection.pipeline(transaction=True)
            for (key, name), increment in counts.items():
                pipe.hincrby(key, name, increment)
            pipe.execute()
        except redis.RedisError as exc:
            # MULTI/EXEC: applied whole or not at all (but for an answer lost after Redis applied
            # it, which would count these twice). Kept for the next refusal.
            with self._lock:
                self._held.update(counts)
            log.debug("refusal counts held until Redis answers: %s", type(exc).__name__)
