"""The dead-letter list: deliveries that failed on their own, again and again, kept in Redis.

A batch that keeps failing for a reason other than an outage is split into single deliveries
(``DeliveryBatches.fail``); one that still fails alone lands here, with its reason, instead of
being claimed again in a loop. ``python -m workers dead-letter list|show|replay|discard``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

import redis

from config.job_contract import dead_letter_reasons_key as reasons_key
from config.job_contract import dead_letters_key, deliveries_key, unpack_delivery
from config.metrics_contract import arrivals_key


def failures_key(queue: str) -> str:
    """Hash: batch key -> how many times its processing failed (not counting outages)."""
    return f"aiwyn:{queue}:batch-failures"


def reason_json(error: str, failures: int) -> str:
    return json.dumps({"error": error, "failures": failures, "at": datetime.now(UTC).isoformat(timespec="seconds")})


@dataclass(frozen=True)
class DeadLetter:
    event_id: str
    subscription_id: str
    body: bytes
    error: str
    failures: int
    at: str


def find(connection: redis.Redis, queue: str, event_ids: tuple[str, ...] = ()) -> list[DeadLetter]:
    """The dead letters (all, or these event ids), oldest first."""
    ids = list(event_ids) or [k.decode() for k in connection.hkeys(dead_letters_key(queue))]
    if not ids:
        return []
    items = connection.hmget(dead_letters_key(queue), ids)
    reasons = connection.hmget(reasons_key(queue), ids)
    found = []
    for item, reason in zip(items, reasons, strict=True):
        if item is None:
            continue
        event_id, subscription_id, body = unpack_delivery(item)
        why = json.loads(reason) if reason else {}
        found.append(DeadLetter(event_id, subscription_id, body, why.get("error", "?"), why.get("failures", 0), why.get("at", "")))
    return sorted(found, key=lambda letter: (letter.at, letter.event_id))


# KEYS: dead letters, reasons, deliveries, arrivals. ARGV: event ids. Moves each back to the delivery list.
_REPLAY = """
local t = redis.call('TIME')
local moved = 0
for _, id in ipairs(ARGV) do
  local item = redis.call('HGET', KEYS[1], id)
  if item then
    redis.call('RPUSH', KEYS[3], item)
    redis.call('RPUSH', KEYS[4], t[1] .. '.' .. string.format('%06d', tonumber(t[2])))
    redis.call('HDEL', KEYS[1], id)
    redis.call('HDEL', KEYS[2], id)
    moved = moved + 1
  end
end
return moved
"""


def replay(connection: redis.Redis, queue: str, event_ids: list[str]) -> int:
    """Put dead letters back on the delivery list (once the cause is fixed); returns how many."""
    if not event_ids:
        return 0
    return int(connection.eval(_REPLAY, 4, dead_letters_key(queue), reasons_key(queue), deliveries_key(queue), arrivals_key(queue), *event_ids))


def discard(connection: redis.Redis, queue: str, event_ids: list[str]) -> int:
    """Drop dead letters for good; returns how many."""
    if not event_ids:
        return 0
    with connection.pipeline(transaction=True) as pipe:
        pipe.hdel(dead_letters_key(queue), *event_ids)
        pipe.hdel(reasons_key(queue), *event_ids)
        removed, _ = pipe.execute()
    return int(removed)
