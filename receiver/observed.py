"""What ``/metrics`` and ``/status`` show, read at request time from Redis and the database.

The counters are Redis hashes every process adds to (``config.metrics_contract``); the
gauges are read where the truth is: the delivery list and claimed batches, RQ's worker
registry, and a few indexed queries of the tables. The receiver never imports ``workers``:
the tables are named here with SQLAlchemy's model-free ``table()``/``column()``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import redis
import sqlalchemy
from rq.worker_registration import REDIS_WORKER_KEYS
from sqlalchemy import BigInteger, DateTime, Integer, String, Text, column, func, or_, select, table

from config.job_contract import batches_key, dead_letter_reasons_key, dead_letters_key, deliveries_key
from config.metrics_contract import (
    LAG_BUCKETS,
    REQUEST_BUCKETS,
    SECRET_FETCHES_KEY,
    SUM_FIELD,
    arrivals_key,
    events_hour_key,
    events_key,
    labels_of,
    lag_key,
    lag_minute_key,
    last_event_key,
    request_duration_key,
    requests_key,
    runs_key,
    view_changes_key,
)
from config.states import LedgerStatus, RunStatus

_when = DateTime(timezone=True)
_runs = table("aiwyn_handler_runs", column("event_id", String), column("handler", String), column("status", String),
              column("attempts", Integer), column("last_error", Text), column("lease_until", _when), column("updated_at", _when))
_events = table("aiwyn_events", column("event_id", String), column("entity_type", String), column("operation", String),
                column("record_id", String), column("status", String), column("last_error", Text), column("received_at", _when))
_sync = table("aiwyn_sync_state", column("entity_type", String), column("backfill_started_at", _when), column("backfill_completed_at", _when),
              column("backfill_records", BigInteger), column("backfill_estimate", BigInteger), column("reconcile_completed_at", _when),
              column("reconcile_summary", String))  # fmt: skip


@dataclass(frozen=True)
class Histogram:
    buckets: tuple[float, ...]
    counts: tuple[int, ...]  # per bucket, the last one +Inf
    sum: float

    @classmethod
    def from_hash(cls, buckets: tuple[float, ...], raw: dict[bytes, bytes]) -> Histogram:
        values = {key.decode(): int(value) for key, value in raw.items()}
        return cls(buckets, tuple(values.get(str(i), 0) for i in range(len(buckets) + 1)), values.get(SUM_FIELD, 0) / 1_000_000)

    @classmethod
    def merged(cls, buckets: tuple[float, ...], parts: list[Histogram]) -> Histogram:
        counts = tuple(sum(part.counts[i] for part in parts) for i in range(len(buckets) + 1))
        return cls(buckets, counts, sum(part.sum for part in parts))

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, int]]:
        """Prometheus's buckets: (upper bound, count of values at or below it)."""
        running, out = 0, []
        for bound, count in zip([*map(repr, self.buckets), "+Inf"], self.counts, strict=True):
            running += count
            out.append((bound, running))
        return out

    def quantile(self, q: float) -> float | None:
        """The upper bound of the bucket holding the q-quantile (None when empty; inf past the last bound)."""
        if not self.count:
            return None
        rank, running = q * self.count, 0
        for bound, count in zip([*self.buckets, float("inf")], self.counts, strict=True):
            running += count
            if running >= rank:
                return bound
        return float("inf")


@dataclass(frozen=True)
class SyncRow:
    entity_type: str
    backfill_started_at: datetime | None
    backfill_completed_at: datetime | None
    backfill_records: int
    backfill_estimate: int | None
    reconcile_completed_at: datetime | None
    reconcile_summary: str | None

    @property
    def completed_at(self) -> datetime | None:
        """The last full comparison with Aiwyn, a backfill's or a reconcile's."""
        return max((t for t in (self.backfill_completed_at, self.reconcile_completed_at) if t), default=None)


@dataclass
class Snapshot:
    """Everything both pages show; counters are totals since Redis last lost them."""

    now: float
    requests: dict[tuple[str, ...], int]
    request_duration: Histogram
    waiting: int
    claimed: int
    oldest_age: float
    events: dict[tuple[str, ...], int]
    lag: Histogram
    last_event: dict[str, float]
    runs: dict[tuple[str, ...], int]
    secret_fetches: dict[str, int]
    dead_letters: int
    workers: int
    failed_runs: dict[str, int] = field(default_factory=dict)
    invalid_events: int = 0
    sync: list[SyncRow] = field(default_factory=list)
    view_changes: dict[tuple[str, ...], int] = field(default_factory=dict)

    @property
    def deliveries(self) -> int:
        return self.waiting + self.claimed


def _counts(raw: dict[bytes, bytes]) -> dict[tuple[str, ...], int]:
    return {labels_of(key): int(value) for key, value in raw.items()}


def _worker_queues(queue: str) -> set[str]:
    # The drain queue and the two beside it (workers.runtime's names, which the receiver may not import).
    return {queue, f"{queue}-handlers", f"{queue}-sync"}


def read_redis(connection: redis.Redis, queue: str) -> Snapshot:
    """The counters and the queue's gauges: two pipelined round trips (three with batches claimed)."""
    pipe = connection.pipeline(transaction=False)
    pipe.time()
    for key in (requests_key(queue), request_duration_key(queue), events_key(queue), lag_key(queue), last_event_key(queue), runs_key(queue),
                SECRET_FETCHES_KEY, view_changes_key(queue)):  # fmt: skip
        pipe.hgetall(key)
    pipe.llen(deliveries_key(queue))
    pipe.lindex(arrivals_key(queue), 0)
    pipe.zrange(batches_key(queue), 0, -1)
    pipe.hlen(dead_letters_key(queue))
    pipe.smembers(REDIS_WORKER_KEYS)
    (seconds, micro), requests, duration, events, lag, last, runs, fetches, views, waiting, first, batches, dead, workers = pipe.execute()
    now = seconds + micro / 1_000_000
    worker_keys = sorted(workers)
    pipe = connection.pipeline(transaction=False)
    for key in batches:
        pipe.llen(key)
    for key in worker_keys:
        pipe.hget(key, "queues")
    answers = pipe.execute() if batches or worker_keys else []
    claimed = sum(answers[: len(batches)])
    ours = _worker_queues(queue)
    alive = sum(1 for queues in answers[len(batches):] if queues is not None and ours & set(queues.decode().split(",")))
    ages = [now - float(first)] if waiting and first is not None else []
    ages += [now - stamp for key in batches if (stamp := _claimed_at(key)) is not None]
    return Snapshot(
        now=now,
        requests=_counts(requests),
        request_duration=Histogram.from_hash(REQUEST_BUCKETS, duration),
        waiting=int(waiting),
        claimed=int(claimed),
        oldest_age=max([0.0, *ages]),
        events=_counts(events),
        lag=Histogram.from_hash(LAG_BUCKETS, lag),
        last_event={key.decode(): float(value) for key, value in last.items()},
        runs=_counts(runs),
        secret_fetches={key.decode(): int(value) for key, value in fetches.items()},
        dead_letters=int(dead),
        workers=alive,
        view_changes=_counts(views),
    )


def _claimed_at(key: bytes) -> float | None:
    """A batch's first claim, from its key (``...:batch:<ms>-<uuid>[-<n>]``): its deliveries waited at least since."""
    stamp = key.decode().rsplit(":", 1)[-1].partition("-")[0]
    return int(stamp) / 1000 if stamp.isdigit() else None


def _db_now(engine: sqlalchemy.Engine) -> datetime:
    now = datetime.now(UTC)
    return now.replace(tzinfo=None) if engine.dialect.name == "sqlite" else now  # as workers.mirror.db_time stores it


def aware(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def read_database(engine: sqlalchemy.Engine, snapshot: Snapshot) -> Snapshot:
    """The failed list per handler, the invalid events and the sync state: three indexed queries."""
    now = _db_now(engine)
    failed = or_(_runs.c.status == RunStatus.FAILED, (_runs.c.status == RunStatus.RUNNING) & (_runs.c.lease_until < now))
    with engine.connect() as connection:
        snapshot.failed_runs = dict(connection.execute(select(_runs.c.handler, func.count()).where(failed).group_by(_runs.c.handler)).all())
        snapshot.invalid_events = connection.scalar(select(func.count()).select_from(_events).where(_events.c.status == LedgerStatus.INVALID)) or 0
        rows = connection.execute(select(_sync).order_by(_sync.c.entity_type)).all()
    snapshot.sync = [
        SyncRow(r.entity_type, aware(r.backfill_started_at), aware(r.backfill_completed_at), r.backfill_records or 0, r.backfill_estimate,
                aware(r.reconcile_completed_at), r.reconcile_summary)  # fmt: skip
        for r in rows
    ]
    return snapshot


def read(connection: redis.Redis, engine: sqlalchemy.Engine, queue: str) -> Snapshot:
    return read_database(engine, read_redis(connection, queue))


# The status page's extras: recent windows and the newest rows of each list.


def events_last_day(connection: redis.Redis, queue: str, now: float | None = None) -> dict[tuple[str, ...], int]:
    """Events per (type, operation, status) applied in the last 24 hours (whole hours)."""
    hour = int((now or time.time()) // 3600)
    pipe = connection.pipeline(transaction=False)
    for h in range(hour - 23, hour + 1):
        pipe.hgetall(events_hour_key(queue, h))
    total: dict[tuple[str, ...], int] = {}
    for raw in pipe.execute():
        for labels, count in _counts(raw).items():
            total[labels] = total.get(labels, 0) + count
    return total


def lag_last_hour(connection: redis.Redis, queue: str, now: float | None = None) -> Histogram:
    minute = int((now or time.time()) // 60)
    pipe = connection.pipeline(transaction=False)
    for m in range(minute - 59, minute + 1):
        pipe.hgetall(lag_minute_key(queue, m))
    return Histogram.merged(LAG_BUCKETS, [Histogram.from_hash(LAG_BUCKETS, raw) for raw in pipe.execute()])


@dataclass(frozen=True)
class Row:
    """One line of a list on the status page."""

    event_id: str
    what: str
    at: datetime | None
    error: str


def newest_failed_runs(engine: sqlalchemy.Engine, limit: int = 20) -> list[Row]:
    now = _db_now(engine)
    query = (
        select(_runs.c.event_id, _runs.c.handler, _runs.c.attempts, _runs.c.last_error, _runs.c.updated_at, _events.c.entity_type, _events.c.operation)
        .join(_events, _events.c.event_id == _runs.c.event_id)
        .where(or_(_runs.c.status == RunStatus.FAILED, (_runs.c.status == RunStatus.RUNNING) & (_runs.c.lease_until < now)))
        .order_by(_runs.c.updated_at.desc(), _runs.c.event_id)
        .limit(limit)
    )
    with engine.connect() as connection:
        return [
            Row(r.event_id, f"{r.handler} on {r.entity_type or '?'} {r.operation or ''}, {r.attempts} attempt(s)", aware(r.updated_at), r.last_error or "")
            for r in connection.execute(query)
        ]


def newest_invalid_events(engine: sqlalchemy.Engine, limit: int = 20) -> list[Row]:
    query = select(_events.c.event_id, _events.c.last_error, _events.c.received_at).where(_events.c.status == LedgerStatus.INVALID)
    with engine.connect() as connection:
        rows = connection.execute(query.order_by(_events.c.received_at.desc(), _events.c.event_id).limit(limit)).all()
    return [Row(r.event_id, LedgerStatus.INVALID, aware(r.received_at), r.last_error or "") for r in rows]


def newest_dead_letters(connection: redis.Redis, queue: str, limit: int = 20) -> list[Row]:
    reasons = connection.hgetall(dead_letter_reasons_key(queue))
    rows = []
    for event_id, raw in reasons.items():
        try:
            why = json.loads(raw)
            at = datetime.fromisoformat(why.get("at", ""))
        except (ValueError, TypeError):
            why, at = {}, None
        rows.append(Row(event_id.decode(), f"failed alone {why.get('failures', '?')} times", at, str(why.get("error", "?"))))
    rows.sort(key=lambda row: (row.at or datetime.min.replace(tzinfo=UTC)), reverse=True)
    return rows[:limit]


def age(seconds: float) -> str:
    """A duration as people read it."""
    if seconds < 0:
        seconds = 0
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= 2 * size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"


def since(moment: datetime | None, now: float) -> str:
    return "never" if moment is None else f"{moment:%Y-%m-%d %H:%M:%S} UTC ({age(now - moment.timestamp())} ago)"

