"""Putting a verified delivery in Redis, once per event id, in one round trip.

A Lua script marks the event id seen (for the deduplication window), appends the delivery to
the list the workers drain, and tells whether a drain job must be queued; only then does the
receiver pay for an RQ enqueue. Under load a drain job is nearly always waiting already, so a
delivery costs one Redis command.
"""

from __future__ import annotations

import enum
import logging
import time

import redis
from rq import Queue
from rq.job import Job

from config import Settings
from config.job_contract import (
    JOB_SERIALIZER,
    WAKE_IS_LIVE_LUA,
    WAKE_TTL_SECONDS,
    deliveries_key,
    delivery_mac_keys,
    enqueue_drain,
    new_drain_job_id,
    pack_delivery,
    seen_key,
    wake_key,
)
from config.metrics_contract import (
    REQUEST_BUCKETS,
    arrivals_key,
    bucket_field,
    field,
    last_event_key,
    micros,
    request_duration_key,
    requests_key,
)

log = logging.getLogger(__name__)

# KEYS: seen, deliveries, wake, requests, request duration, last event, arrivals, the RQ queue.
# ARGV: dedupe ttl, packed delivery, wake ttl, RQ job key prefix, new job id,
#       request field if fresh, if duplicate, duration bucket field, duration in µs, subscription.
# A duplicate still wakes a drain job if deliveries are waiting: a wake-up lost earlier
# (a crash between this script and the enqueue) is made good by the next delivery.
# The counts behind /metrics (config.metrics_contract) are kept here, in the same round trip.
_PUSH = WAKE_IS_LIVE_LUA + """
local fresh = redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1])
local t = redis.call('TIME')
local now = t[1] .. '.' .. string.format('%06d', tonumber(t[2]))
if fresh then
  redis.call('RPUSH', KEYS[2], ARGV[2])
  redis.call('RPUSH', KEYS[7], now)
end
redis.call('HINCRBY', KEYS[4], fresh and ARGV[6] or ARGV[7], 1)
redis.call('HINCRBY', KEYS[5], ARGV[8], 1)
redis.call('HINCRBY', KEYS[5], 'sum_us', ARGV[9])
redis.call('HSET', KEYS[6], ARGV[10], now)
local wake = false
if (fresh or redis.call('LLEN', KEYS[2]) > 0) and not wake_is_live(KEYS[3], ARGV[4], ARGV[3], KEYS[8]) then
  wake = redis.call('SET', KEYS[3], ARGV[5], 'EX', ARGV[3])
end
return {fresh and 1 or 0, wake and 1 or 0}
"""


class Enqueued(enum.Enum):
    QUEUED = "queued"
    DUPLICATE = "duplicate"


# The status and reason the endpoint answers each with (receiver.webhook), as counted.
_FRESH = field("202", Enqueued.QUEUED.value)
_DUPLICATE = field("200", "already queued or done")


class DeliveryQueue:
    """The receiver's side of the contract in ``config.job_contract``."""

    def __init__(self, settings: Settings, connection: redis.Redis) -> None:
        self._settings = settings
        self._connection = connection
        self._push = connection.register_script(_PUSH)
        self._queue = Queue(settings.queue_name, connection=connection, serializer=JOB_SERIALIZER)
        self._mac_key = delivery_mac_keys(settings.require_secrets_key())[0]
        queue = settings.queue_name
        self._keys = [deliveries_key(queue), wake_key(queue), requests_key(queue), request_duration_key(queue), last_event_key(queue), arrivals_key(queue),
                      self._queue.key]

    def enqueue(self, event_id: str, subscription_id: str, body: bytes, started: float | None = None) -> Enqueued:
        """Store the delivery, and count it as answered (``started``: the request's ``perf_counter``);
        raises ``redis.RedisError`` when Redis cannot take it."""
        job_id = new_drain_job_id()
        # The duration counted is the request's until this call: its own work, without the round trip.
        elapsed = time.perf_counter() - started if started is not None else 0.0
        fresh, wake = self._push(
            keys=[seen_key(event_id), *self._keys],
            args=[self._settings.dedupe_ttl, pack_delivery(event_id, subscription_id, body, self._mac_key), WAKE_TTL_SECONDS, Job.redis_job_namespace_prefix,
                  job_id, _FRESH, _DUPLICATE, bucket_field(REQUEST_BUCKETS, elapsed), micros(elapsed), subscription_id],
        )  # fmt: skip
        if wake:
            self.wake(job_id)
        return Enqueued.QUEUED if fresh else Enqueued.DUPLICATE

    def wake(self, job_id: str | None = None) -> None:
        """Queue a drain job; a failure here loses nothing (the delivery is stored), only time."""
        try:
            enqueue_drain(self._queue, self._settings, job_id)
        except redis.RedisError as exc:
            log.warning("drain job not queued (%s); the next delivery or a worker's sweep will queue it", type(exc).__name__)

