"""Putting a verified delivery in Redis, once per event id, in one round trip.

A Lua script marks the event id seen (for the deduplication window), appends the delivery to
the list the workers drain, and tells whether a drain job must be queued; only then does the
receiver pay for an RQ enqueue. Under load a drain job is nearly always waiting already, so a
delivery costs one Redis command. With ``AIWYN_RECEIVER_REDIS_MIN_REPLICAS``, a WAIT for the
replicas rides in the same round trip, and too few of them is ``NotReplicated`` (a 503).
"""

from __future__ import annotations

import enum
import logging
import time

import redis
from redis.exceptions import NoScriptError
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
    SUM_FIELD,
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


class NotReplicated(redis.RedisError):
    """Stored on the primary, but fewer replicas than ``AIWYN_RECEIVER_REDIS_MIN_REPLICAS`` have it yet: answered 503."""

    def __init__(self, acknowledged: int, wanted: int, timeout_ms: int) -> None:
        super().__init__(f"{acknowledged} of {wanted} replicas acknowledged within {timeout_ms} ms")


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
        fresh, wake, replicas = self._store(
            [seen_key(event_id), *self._keys],
            [self._settings.dedupe_ttl, pack_delivery(event_id, subscription_id, body, self._mac_key), WAKE_TTL_SECONDS, Job.redis_job_namespace_prefix,
             job_id, _FRESH, _DUPLICATE, bucket_field(REQUEST_BUCKETS, elapsed), micros(elapsed), subscription_id],
        )  # fmt: skip
        if wake:
            self.wake(job_id)  # a delivery answered 503 below is stored all the same: drained as usual
        if replicas is not None and replicas < self._settings.redis_min_replicas:
            self._uncount(fresh, elapsed)
            raise NotReplicated(replicas, self._settings.redis_min_replicas, self._settings.redis_replica_timeout_ms)
        return Enqueued.QUEUED if fresh else Enqueued.DUPLICATE

    def _store(self, keys: list[str], args: list[object]) -> tuple[int, int, int | None]:
        """Run the storing script; with ``AIWYN_RECEIVER_REDIS_MIN_REPLICAS``, WAIT for that many replicas
        too and return how many acknowledged (else None).

        WAIT counts the writes of its own connection, so it goes in one pipeline with the script:
        one connection, one round trip. A duplicate waits as well: its first copy, written earlier
        on the primary, may not be on a replica yet."""
        wanted = self._settings.redis_min_replicas
        if not wanted:
            fresh, wake = self._push(keys=keys, args=args)
            return fresh, wake, None
        for _ in range(2):
            pipe = self._connection.pipeline(transaction=False)
            pipe.evalsha(self._push.sha, len(keys), *keys, *args)
            pipe.wait(wanted, self._settings.redis_replica_timeout_ms)
            stored, replicas = pipe.execute(raise_on_error=False)
            if not isinstance(stored, NoScriptError):
                break
            self._connection.script_load(_PUSH)  # a new primary after a failover: its script cache is empty
        for result in (stored, replicas):
            if isinstance(result, Exception):
                raise result
        fresh, wake = stored
        return fresh, wake, int(replicas)

    def _uncount(self, fresh: int, elapsed: float) -> None:
        """The script counted the answer (202 or 200) and its duration; the endpoint counts the 503 it answers instead."""
        try:
            pipe = self._connection.pipeline(transaction=True)
            pipe.hincrby(self._keys[2], _FRESH if fresh else _DUPLICATE, -1)
            pipe.hincrby(self._keys[3], bucket_field(REQUEST_BUCKETS, elapsed), -1)
            pipe.hincrby(self._keys[3], SUM_FIELD, -micros(elapsed))
            pipe.execute()
        except redis.RedisError as exc:
            log.debug("answer count not corrected: %s", type(exc).__name__)

    def wake(self, job_id: str | None = None) -> None:
        """Queue a drain job; a failure here loses nothing (the delivery is stored), only time."""
        try:
            enqueue_drain(self._queue, self._settings, job_id)
        except redis.RedisError as exc:
            log.warning("drain job not queued (%s); the next delivery or a worker's sweep will queue it", type(exc).__name__)

