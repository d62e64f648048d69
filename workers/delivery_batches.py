"""Claiming deliveries from the Redis list in batches, so that a crashed worker loses nothing.

A claim moves up to N deliveries from the list into a batch list of their own, in one Lua
script, and records the batch with a lease deadline in a sorted set. The batch is deleted only
after its events are committed to the database. A batch whose lease has passed (its worker
died, or gave it back after a database error) is claimed again, whole, by the next worker:
the ledger makes processing it a second time harmless.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import redis
from rq import Queue
from rq.job import Job

from config import Settings
from config.job_contract import (
    JOB_SERIALIZER,
    WAKE_IS_LIVE_LUA,
    WAKE_TTL_SECONDS,
    batches_key,
    deliveries_key,
    delivery_is_genuine,
    delivery_mac_keys,
    enqueue_drain,
    new_drain_job_id,
    unpack_delivery,
    wake_key,
)
from config.metrics_contract import arrivals_key
from workers.dead_letters import dead_letters_key, failures_key, reason_json, reasons_key

log = logging.getLogger(__name__)

# KEYS: deliveries, batches, arrivals. ARGV: lease seconds, new batch key, max items.
# Returns the batch's key, its items and how many deliveries still wait after it.
# The arrival times (config.metrics_contract) leave with their deliveries; an empty delivery
# list empties them too, so a list written without them (an older receiver) cannot skew them for long.
_CLAIM = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local stale = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 1)
if #stale > 0 then
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[1]), stale[1])
  return {stale[1], redis.call('LRANGE', stale[1], 0, -1), redis.call('LLEN', KEYS[1])}
end
local items = redis.call('LPOP', KEYS[1], ARGV[3])
if items then redis.call('LPOP', KEYS[3], #items) end
local waiting = redis.call('LLEN', KEYS[1])
if waiting == 0 then redis.call('DEL', KEYS[3]) end
if not items then return false end
redis.call('RPUSH', ARGV[2], unpack(items))
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[1]), ARGV[2])
return {ARGV[2], items, waiting}
"""

# KEYS: deliveries, batches, wake, the RQ queue. ARGV: wake ttl, RQ job key prefix, new job id.
# 1 when a drain job should be queued: deliveries wait and the flag names no queued drain job.
_NEEDS_DRAIN = WAKE_IS_LIVE_LUA + """
local t = redis.call('TIME')
local waiting = redis.call('LLEN', KEYS[1]) > 0 or #redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', t[1], 'LIMIT', 0, 1) > 0
if waiting and not wake_is_live(KEYS[3], ARGV[2], ARGV[1], KEYS[4]) then
  redis.call('SET', KEYS[3], ARGV[3], 'EX', ARGV[1])
  return 1
end
return 0
"""


# KEYS: batches, failures, batch, dead letters, reasons. ARGV: retry in, max failures, reason, event id.
# Counts a failed batch; below the limit it is given back, then split into single deliveries,
# and a single delivery goes to the dead-letter list: never claimed again in a loop.
_FAIL = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local count = redis.call('HINCRBY', KEYS[2], KEYS[3], 1)
if count < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), KEYS[3])
  return {'retry', count}
end
local items = redis.call('LRANGE', KEYS[3], 0, -1)
redis.call('DEL', KEYS[3])
redis.call('ZREM', KEYS[1], KEYS[3])
redis.call('HDEL', KEYS[2], KEYS[3])
if #items > 1 then
  for i, item in ipairs(items) do
    redis.call('RPUSH', KEYS[3] .. '-' .. i, item)
    redis.call('ZADD', KEYS[1], now, KEYS[3] .. '-' .. i)
  end
  return {'split', count}
end
if #items == 1 then
  redis.call('HSET', KEYS[4], ARGV[4], items[1])
  redis.call('HSET', KEYS[5], ARGV[4], ARGV[3])
end
return {'dead', count}
"""


def unverified_key(queue: str) -> str:
    """The list of deliveries found in Redis without a valid MAC: never applied, kept for an operator."""
    return f"aiwyn:{queue}:unverified"


@dataclass(frozen=True)
class Batch:
    key: str
    deliveries: list[tuple[str, str, bytes]]
    # Deliveries still in the list once this batch was claimed: a backlog that another worker can share.
    waiting: int = 0

    @property
    def claimed_at(self) -> datetime | None:
        """When the batch was first claimed (its key says; a retaken batch keeps it): its
        deliveries all arrived before then. None for a key from before this was recorded."""
        stamp = self.key.rsplit(":", 1)[-1].partition("-")[0]
        return datetime.fromtimestamp(int(stamp) / 1000, UTC) if stamp.isdigit() else None


class DeliveryBatches:
    """The workers' side of ``config.job_contract``: claim, release, give back, wake."""

    def __init__(self, settings: Settings, connection: redis.Redis, lease_seconds: float) -> None:
        self._settings = settings
        self._connection = connection
        self._queue = Queue(settings.queue_name, connection=connection, serializer=JOB_SERIALIZER)
        self._mac_keys = delivery_mac_keys(settings.secrets_key)
        self._lease = lease_seconds
        self._deliveries = deliveries_key(settings.queue_name)
        self._batches = batches_key(settings.queue_name)
        self._arrivals = arrivals_key(settings.queue_name)
        self._claim = connection.register_script(_CLAIM)
        self._needs_drain = connection.register_script(_NEEDS_DRAIN)
        self._fail = connection.register_script(_FAIL)
        self._failures = failures_key(settings.queue_name)

    def claim(self, size: int) -> Batch | None:
        """Up to ``size`` deliveries, or an abandoned batch first; None when there is nothing."""
        new_key = f"aiwyn:{self._settings.queue_name}:batch:{int(time.time() * 1000)}-{uuid.uuid4().hex}"
        claimed = self._claim(keys=[self._deliveries, self._batches, self._arrivals], args=[self._lease, new_key, size])
        if not claimed:
            return None
        key, items, waiting = claimed
        deliveries = []
        for item in items:
            if not self._genuine(item):
                continue
            try:
                deliveries.append(unpack_delivery(item))
            except ValueError:
                # Only this service writes the list; keep what it cannot read for an operator.
                self._connection.rpush(f"aiwyn:{self._settings.queue_name}:unreadable", item)
                log.error("an unreadable delivery was moved to aiwyn:%s:unreadable", self._settings.queue_name)
        return Batch(key.decode() if isinstance(key, bytes) else key, deliveries, int(waiting))

    def _genuine(self, item: bytes) -> bool:
        """Only what a receiver of ours packed passes: anyone else who can write to Redis could push
        a forged delivery past the signature check. The rest is kept for an operator, not applied."""
        genuine = delivery_is_genuine(item, self._mac_keys)
        if genuine or (genuine is None and self._settings.accept_deliveries_without_mac):
            return True
        self._connection.rpush(unverified_key(self._settings.queue_name), item)
        why = "carries no MAC (queued before the upgrade?)" if genuine is None else "has a MAC that does not match AIWYN_RECEIVER_SECRETS_KEY"
        log.error("a delivery in Redis %s: moved to %s, not applied", why, unverified_key(self._settings.queue_name))
        return False

    def release(self, batch: Batch) -> None:
        """The batch's events are committed: forget it."""
        with self._connection.pipeline(transaction=True) as pipe:
            pipe.delete(batch.key)
            pipe.zrem(self._batches, batch.key)
            pipe.hdel(self._failures, batch.key)
            pipe.execute()

    def fail(self, batch: Batch, error: str, max_failures: int, retry_in: float) -> tuple[str, int]:
        """Count a failure of the batch (not an outage): ``retry`` it after ``retry_in`` seconds,
        ``split`` it into single deliveries at ``max_failures``, or, alone, move it to the ``dead``
        letters; returns what was done and the count."""
        queue = self._settings.queue_name
        event_id = batch.deliveries[0][0] if len(batch.deliveries) == 1 else ""
        outcome, count = self._fail(
            keys=[self._batches, self._failures, batch.key, dead_letters_key(queue), reasons_key(queue)],
            args=[retry_in, max_failures, reason_json(error, max_failures), event_id],
        )
        return (outcome.decode() if isinstance(outcome, bytes) else outcome), int(count)

    def abandon(self, batch: Batch, retry_in: float) -> None:
        """Give the batch back: the first drain job after ``retry_in`` seconds takes it over."""
        try:
            self._connection.eval(
                "local t = redis.call('TIME') redis.call('ZADD', KEYS[1], t[1] + ARGV[2], ARGV[1])",
                1,
                self._batches,
                batch.key,
                retry_in,
            )
        except redis.RedisError:
            log.warning("batch %s not given back; it is taken over when its lease ends", batch.key)

    def wake_if_needed(self) -> bool:
        """Queue a drain job when deliveries wait and none is queued: a lost wake-up costs seconds."""
        job_id = new_drain_job_id()
        if self._needs_drain(
            keys=[self._deliveries, self._batches, wake_key(self._settings.queue_name), self._queue.key],
            args=[WAKE_TTL_SECONDS, Job.redis_job_namespace_prefix, job_id],
        ):
            enqueue_drain(self._queue, self._settings, job_id)
            return True
        return False

    def pending(self) -> int:
        """Deliveries not yet claimed (for the CLI and the tests)."""
        return int(self._connection.llen(self._deliveries))
