"""The one agreement between the receiver and the workers: where a verified delivery goes.

The receiver appends each verified delivery, packed by ``pack_delivery`` (the ``webhook-id``,
the ``aiwyn-subscription-id`` header and the raw body as received, so what is queued is
exactly what was signed), to the Redis list ``deliveries_key(queue)``, and marks the event id
seen under ``seen_key``; both in one Lua script, one round trip. When no drain job is waiting
(``wake_key`` was absent), it also enqueues the RQ job ``DRAIN_DELIVERIES(queue)``, which
drains the list in batches. One RQ job per batch instead of per event is what keeps RQ's
bookkeeping (dozens of Redis commands a job) off the per-event cost.

The workers delete ``seen_key`` of an event whose handler gave up, so that a redelivery of it
is queued again and re-runs only the failed handlers.

Redis is not trusted with code or with proof (a review ran ``subprocess.getoutput`` as an RQ
job by writing to Redis): jobs are serialized as JSON (``JOB_SERIALIZER``; RQ's default,
pickle, runs code on load) and workers run only the names in ``workers.worker.ALLOWED_JOBS``;
every packed delivery carries an HMAC-SHA256 under a key derived from
``AIWYN_RECEIVER_SECRETS_KEY`` (``delivery_mac_keys``), which Redis never holds, so an item
pushed by anyone else is set aside by the workers instead of passing the signature check.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from typing import TYPE_CHECKING

from rq import Queue, Retry
from rq.serializers import JSONSerializer

if TYPE_CHECKING:
    from config.settings import Settings

DRAIN_DELIVERIES = "workers.jobs.drain_deliveries"
# The job that runs one custom handler on events of a committed batch (or retries one event).
RUN_HANDLER = "workers.jobs.run_handler"
# Every queue and worker of the project serializes jobs as JSON: pickle would run code on load.
JOB_SERIALIZER = JSONSerializer
# A wake-up flag lives this long at most, so a drain job lost between the flag and its enqueue
# (a crash in between) delays a delivery by this much, never forever.
WAKE_TTL_SECONDS = 30
# The flag holds the id of the drain job it stands for, and counts only while RQ has that job
# queued (or for a moment after the flag is set, while its enqueue is under way): a job taken by
# a worker that died, or lost in a Redis restart, cannot keep deliveries waiting for the TTL.
WAKE_ENQUEUE_GRACE_SECONDS = 2
# Lua, shared by the receiver's and the workers' scripts:
# ``wake_is_live(flag key, job key prefix, ttl, RQ queue key)``. "Queued" means in the queue's list
# too: a job whose hash says queued but whose id left the list (a worker died right after taking
# it, or a Redis restart kept one write and lost the other) would otherwise hold the flag for its TTL.
WAKE_IS_LIVE_LUA = f"""
local function wake_is_live(wake, job_prefix, ttl, queue)
  local id = redis.call('GET', wake)
  if not id then return false end
  local status = redis.call('HGET', job_prefix .. id, 'status')
  if status == 'queued' then return redis.call('LPOS', queue, id) ~= false end
  if status then return false end
  return redis.call('PTTL', wake) > (tonumber(ttl) - {WAKE_ENQUEUE_GRACE_SECONDS}) * 1000
end
"""

# The longest webhook-id the receiver accepts: the ledger's event_id column is this wide
# (workers/models.py), so a longer one could be acknowledged but never stored.
MAX_EVENT_ID = 200


def _key_part(event_id: str) -> str:
    if event_id.isprintable():
        return event_id
    return "sha256:" + hashlib.sha256(event_id.encode("utf-8", "surrogatepass")).hexdigest()


def seen_key(event_id: str) -> str:
    """Present while the event id is inside the deduplication window."""
    return f"aiwyn:seen:{_key_part(event_id)}"


def deliveries_key(queue: str) -> str:
    """The list of verified deliveries not yet claimed by a worker."""
    return f"aiwyn:{queue}:deliveries"


def batches_key(queue: str) -> str:
    """Sorted set: the keys of claimed batches (lists of deliveries), scored by their lease's end."""
    return f"aiwyn:{queue}:batches"


def dead_letters_key(queue: str) -> str:
    """Hash: event id -> the delivery as packed by ``pack_delivery``, set aside after failing alone."""
    return f"aiwyn:{queue}:dead-letters"


def dead_letter_reasons_key(queue: str) -> str:
    """Hash: event id -> JSON ``{"error", "failures", "at"}`` of a dead letter."""
    return f"aiwyn:{queue}:dead-letter-reasons"


def wake_key(queue: str) -> str:
    """Set while a drain job is queued and has not started; its value is the job's id."""
    return f"aiwyn:{queue}:wake"


def new_drain_job_id() -> str:
    """The id of the next drain job, written into the wake flag before the job is queued."""
    return f"drain-{uuid.uuid4().hex}"


# A packed delivery starts with this mark and its 32-byte MAC. Header values hold no NUL byte,
# so an item packed before MACs existed (it starts with its event id) never starts so.
_MAC_MARK = b"\x00m1"
_MAC_SIZE = 32
_MAC_LABEL = b"aiwyn-receiver delivery mac v1"


def delivery_mac_keys(secrets_key: tuple[str, ...]) -> tuple[bytes, ...]:
    """One MAC key per Fernet key (the first signs, any verifies), derived so neither key reveals the other."""
    return tuple(hmac.new(base64.urlsafe_b64decode(key), _MAC_LABEL, hashlib.sha256).digest() for key in secrets_key)


def pack_delivery(event_id: str, subscription_id: str, body: bytes, mac_key: bytes) -> bytes:
    """One list item: the MAC, then the ids and the body; header values cannot hold a newline, so two newlines frame the ids."""
    packed = event_id.encode("utf-8") + b"\n" + subscription_id.encode("utf-8") + b"\n" + body
    return _MAC_MARK + hmac.new(mac_key, packed, hashlib.sha256).digest() + packed


def delivery_is_genuine(item: bytes, mac_keys: tuple[bytes, ...]) -> bool | None:
    """True when the item carries a MAC under one of the keys, False for a wrong one, None for none at all (packed before MACs)."""
    if not item.startswith(_MAC_MARK):
        return None
    mac, packed = item[len(_MAC_MARK) : len(_MAC_MARK) + _MAC_SIZE], item[len(_MAC_MARK) + _MAC_SIZE :]
    matched = False
    for key in mac_keys:
        matched |= hmac.compare_digest(hmac.new(key, packed, hashlib.sha256).digest(), mac)
    return matched


def unpack_delivery(item: bytes) -> tuple[str, str, bytes]:
    """The ids and the body of an item, MAC or not (``delivery_is_genuine`` checks the MAC); ValueError if unreadable."""
    if item.startswith(_MAC_MARK):
        item = item[len(_MAC_MARK) + _MAC_SIZE :]
    event_id, subscription_id, body = item.split(b"\n", 2)
    return event_id.decode("utf-8"), subscription_id.decode("utf-8"), body


def enqueue_drain(queue: Queue, settings: Settings, job_id: str | None = None) -> None:
    """Queue the RQ job that drains the delivery list (as ``job_id``, the wake flag's); RQ's retries cover database outages."""
    intervals = list(settings.job_retry_intervals)
    queue.enqueue_call(
        DRAIN_DELIVERIES,
        job_id=job_id,
        args=(settings.queue_name,),
        timeout=settings.job_timeout,
        result_ttl=600,
        failure_ttl=7 * 24 * 3600,
        retry=Retry(max=len(intervals), interval=intervals) if intervals else None,
        description="drain aiwyn deliveries",
    )
