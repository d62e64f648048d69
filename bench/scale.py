"""``python -m bench --scale``: what the service costs as its work grows (PostgreSQL).

1. rows: mirror throughput from a pre-filled queue, one worker, with 10,000 and then with
   1,000,000 records (and as many ledger rows) already stored. Half the events update stored
   records spread over the whole table, half create and update records of their own.
2. redis: bytes of Redis per waiting delivery and per remembered event id, from ``MEMORY
   USAGE`` and from ``used_memory`` over many (which also counts the expiry entry and the hash
   table), stored by the receiver's own script; the deduplication window's size at 10, 100
   and 1,000 events/s.
3. workers: mirror throughput from a pre-filled queue with 1, 2 and 4 workers.

The stack is ``bench.__main__.Stack``, handed in by ``python -m bench``; this module never
starts processes itself.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import sqlalchemy

from bench.load import ENTITY_TYPES, event
from config.job_contract import deliveries_key, delivery_mac_keys, pack_delivery, seen_key
from config.metrics_contract import arrivals_key
from config.settings import Settings
from config.settings import from_env as settings_from_env

if TYPE_CHECKING:
    from bench.__main__ import Stack

QUEUE = "aiwyn-events"
RATES = (10, 100, 1000)  # events/s at which the deduplication window is priced

# One row per seeded record, and its CREATE in the ledger, as an event would have left them:
# the attributes of the shape the emulator sends (and bench.load's events), five entity types.
_SEED_RECORDS = """
INSERT INTO aiwyn_records (entity_type, record_id, system_ref, attributes, active, version, occurred_at, event_id, updated_at, source)
SELECT (ARRAY['client', 'contact', 'staff', 'department', 'office'])[1 + n % 5], 'rec_s' || lpad(n::text, 7, '0'),
       jsonb_build_object('system', 'erp', 'id', 'C-' || n),
       jsonb_build_object('name', 'Client ' || n || ' LLP', 'industry', 'ind_0' || (n % 10), 'email', 'office' || n || '@example.com',
                          'notes', repeat('x', 700), 'revision', 1),
       true, 1, timestamptz '2026-11-01' + n * interval '1 second', 'evt_s' || lpad(n::text, 8, '0'), now(), 'event'
FROM generate_series(:start, :stop - 1) AS n
"""
_SEED_LEDGER = """
INSERT INTO aiwyn_events (event_id, subscription_id, entity_type, operation, record_id, occurred_at, payload, status, attempts, received_at, processed_at)
SELECT 'evt_s' || lpad(n::text, 8, '0'), CAST(:subscription AS text), (ARRAY['client', 'contact', 'staff', 'department', 'office'])[1 + n % 5], 'CREATE',
       'rec_s' || lpad(n::text, 7, '0'), timestamptz '2026-11-01' + n * interval '1 second',
       jsonb_build_object('id', 'evt_s' || lpad(n::text, 8, '0'), 'subscriptionId', CAST(:subscription AS text), 'operation', 'CREATE',
                          'entityType', (ARRAY['client', 'contact', 'staff', 'department', 'office'])[1 + n % 5],
                          'record', jsonb_build_object('id', 'rec_s' || lpad(n::text, 7, '0'), 'version', 1, 'active', true,
                                                       'systemRef', jsonb_build_object('system', 'erp', 'id', 'C-' || n),
                                                       'attributes', jsonb_build_object('name', 'Client ' || n || ' LLP', 'notes', repeat('x', 700))))::text,
       'processed', 1, now(), now()
FROM generate_series(:start, :stop - 1) AS n
"""  # fmt: skip


def seed(stack: Stack, start: int, stop: int) -> float:
    """Store seeded records ``start``..``stop - 1`` and their ledger rows; returns the seconds taken.

    Vacuumed, analyzed and checkpointed afterwards, as a database that grew over time would
    be: the measurement then pays for neither the seed's bookkeeping nor its dirty pages.
    """
    started = time.monotonic()
    for low in range(start, stop, 100_000):  # one transaction per 100,000 rows: WAL and memory stay bounded
        with stack.engine.begin() as connection:
            values = {"start": low, "stop": min(stop, low + 100_000), "subscription": stack.subscription_id}
            connection.execute(sqlalchemy.text(_SEED_RECORDS), values)
            connection.execute(sqlalchemy.text(_SEED_LEDGER), values)
    _maintain(stack, "VACUUM ANALYZE aiwyn_records, aiwyn_events", "CHECKPOINT")
    return time.monotonic() - started


def _maintain(stack: Stack, *statements: str) -> None:
    with stack.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        for statement in statements:
            connection.exec_driver_sql(statement)


def seeded_update(n: int, subscription_id: str, seeded: int, version: int, prefix: str) -> tuple[str, bytes]:
    """An UPDATE of a stored record; consecutive ``n`` land far apart in the table (a prime stride)."""
    index = n * 7919 % seeded
    event_id, body = event(n, subscription_id, 1, prefix)
    change = json.loads(body)
    kind = ENTITY_TYPES[index % len(ENTITY_TYPES)]
    change.update(entityType=kind, operation="UPDATE")
    change["record"].update(id=f"rec_s{index:07d}", type=kind, version=version, systemRef={"system": "erp", "id": f"C-{index}"})
    change["record"]["attributes"].update(name=f"Client {index} LLP", revision=version)
    return event_id, json.dumps(change).encode()


def mixed_events(count: int, subscription_id: str, seeded: int, run: int, prefix: str) -> list[tuple[str, bytes]]:
    """Half updates of stored records (at a version above every earlier run's), half records of the run's own."""
    updates = [seeded_update(n, subscription_id, seeded, run + 2, f"{prefix}u") for n in range(count // 2)]
    own = [event(n, subscription_id, max(count // 8, 1), f"{prefix}n") for n in range(count - count // 2)]
    return [change for pair in zip(updates, own, strict=False) for change in pair] + updates[len(own) :] + own[len(updates) :]


def push(stack: Stack, events: Iterable[tuple[str, bytes]]) -> None:
    """Queue verified deliveries as the receiver does (seen mark, MACed item), without the HTTP part."""
    mac_key = delivery_mac_keys((stack.env["AIWYN_RECEIVER_SECRETS_KEY"],))[0]
    with stack.redis.pipeline(transaction=False) as pipe:
        for event_id, body in events:
            pipe.set(seen_key(event_id), "1", ex=3600)
            pipe.rpush(deliveries_key(QUEUE), pack_delivery(event_id, stack.subscription_id, body, mac_key))
        pipe.execute()


def timed_drain(stack: Stack, events: list[tuple[str, bytes]], workers: int) -> float:
    """Events/s from the first committed row to the last, ``workers`` workers draining ``events``.

    Counted in the ledger by event id range (an index-only scan), so polling stays cheap with a
    million rows stored; every id of a run shares its prefix.
    """
    ids = sorted(event_id for event_id, _ in events)
    count_sql = sqlalchemy.text("SELECT count(*) FROM aiwyn_events WHERE event_id BETWEEN :low AND :high")
    push(stack, events)
    first = first_count = None
    deadline = time.monotonic() + 600
    with stack.workers(workers), stack.engine.connect() as connection:
        while time.monotonic() < deadline:
            done = connection.execute(count_sql, {"low": ids[0], "high": ids[-1]}).scalar_one()
            connection.commit()
            now = time.monotonic()
            if done and first is None:
                first, first_count = now, done
            if done >= len(ids):
                return (len(ids) - first_count) / max(now - first, 1e-6)
            time.sleep(0.05)
    raise RuntimeError(f"only {done} of {len(ids)} events mirrored after 600 s; see the worker logs in {stack.directory}")


def bench_rows(stack: Stack, sizes: tuple[int, ...], count: int, runs: int) -> dict[str, Any]:
    """Mirror throughput (1 worker) with each of ``sizes`` records stored; the same events each time."""
    _truncate(stack)
    figures: dict[str, Any] = {}
    stored = 0
    for size in sizes:
        seconds = seed(stack, stored, size)
        stored = size
        rates = []
        for run in range(runs):
            prefix = f"x{len(figures)}{run}"
            rates.append(timed_drain(stack, mixed_events(count, stack.subscription_id, size, run + len(figures) * runs, prefix), 1))
            _forget_run(stack, prefix)
        figures[str(size)] = {"events_per_second": statistics.median(rates), "runs": rates, "seed_seconds": seconds, **_sizes(stack)}
    first, last = figures[str(sizes[0])], figures[str(sizes[-1])]
    figures["ratio"] = last["events_per_second"] / first["events_per_second"]
    return figures


def _forget_run(stack: Stack, prefix: str) -> None:
    """Delete a run's ledger rows and its own records, so that every run meets the same table sizes."""
    with stack.engine.begin() as connection:
        connection.execute(sqlalchemy.text("DELETE FROM aiwyn_events WHERE event_id BETWEEN :low AND :high"),
                           {"low": f"evt_{prefix}", "high": f"evt_{prefix}~"})  # fmt: skip
        connection.execute(sqlalchemy.text("DELETE FROM aiwyn_records WHERE entity_type = ANY(:types) AND record_id BETWEEN :low AND :high"),
                           {"types": list(ENTITY_TYPES), "low": f"rec_{prefix}", "high": f"rec_{prefix}~"})  # fmt: skip
    _maintain(stack, "VACUUM aiwyn_records, aiwyn_events")


def _truncate(stack: Stack) -> None:
    _maintain(stack, "TRUNCATE aiwyn_records, aiwyn_events")  # before the reset's DELETE, which would be slow on a million rows
    stack.reset()


def _flush(stack: Stack) -> None:
    """Empty Redis but for the registered secrets, as ``Stack.reset`` does, leaving the tables alone."""
    secrets = stack.redis.dump("aiwyn:secrets")
    stack.redis.flushdb()
    if secrets:
        stack.redis.restore("aiwyn:secrets", 0, secrets)


def _sizes(stack: Stack) -> dict[str, int]:
    """Table and index sizes in bytes: where the database's growth goes."""
    with stack.engine.connect() as connection:
        rows = connection.execute(sqlalchemy.text(
            "SELECT c.relname, pg_relation_size(c.oid) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'i') AND (c.relname LIKE '%aiwyn_records%' OR c.relname LIKE '%aiwyn_events%')"
        )).all()
    return {f"bytes_{name}": size for name, size in rows}


def bench_redis(stack: Stack, deliveries: int, ids: int, ttls: tuple[int, ...]) -> dict[str, Any]:
    """Bytes per waiting delivery and per remembered id, stored by the receiver's own script."""
    from receiver.delivery_queue import DeliveryQueue  # the web tier's script, as it runs in production

    _flush(stack)
    r = stack.redis
    settings = settings_from_env(stack.env)
    queue = DeliveryQueue(settings, r)
    changes = [event(n, stack.subscription_id, max(deliveries // 4, 1), "m") for n in range(deliveries)]
    body_bytes = statistics.mean(len(body) for _, body in changes)
    start = _used(r)
    for event_id, body in changes:
        queue.enqueue(event_id, stack.subscription_id, body)
    queued = _used(r)
    # A waiting delivery is an item of the delivery list and one of its arrival times beside it.
    lists = r.memory_usage(deliveries_key(QUEUE), samples=0) + r.memory_usage(arrivals_key(QUEUE), samples=0)
    seen_key_usage = r.memory_usage(seen_key(changes[0][0]), samples=0)
    # Many more ids, set as the script sets them, for a steadier figure (the hash table grows in steps).
    _flush(stack)
    empty = _used(r)
    with r.pipeline(transaction=False) as pipe:
        for n in range(ids):
            pipe.set(seen_key(f"evt_{n:012d}"), "1", nx=True, ex=settings.dedupe_ttl)  # 16 characters, as the contract's example id
            if n % 10_000 == 9_999:
                pipe.execute()
        pipe.execute()
    per_id = (_used(r) - empty) / ids
    _flush(stack)
    return {
        "body_bytes": body_bytes,
        "per_waiting_delivery": lists / deliveries,
        "per_remembered_id": per_id,
        "memory_usage_seen_key": seen_key_usage,
        "used_memory_per_enqueue": (queued - start) / deliveries,  # all the script stores for one delivery, its id included
        "deliveries_measured": deliveries,
        "ids_measured": ids,
        "window": {str(ttl): {str(rate): per_id * rate * ttl for rate in RATES} for ttl in ttls},
    }


def _used(r: Any) -> int:
    return int(r.info("memory")["used_memory"])


def bench_workers(stack: Stack, counts: tuple[int, ...], events: int, runs: int) -> dict[str, Any]:
    """Mirror throughput into an empty mirror with each number of workers (ascending: a quick stack keeps its workers)."""
    figures = {}
    for workers in counts:
        rates = []
        for run in range(runs):
            _truncate(stack)
            rates.append(timed_drain(stack, [event(n, stack.subscription_id, max(events // 4, 1), f"w{workers}{run}") for n in range(events)], workers))
        figures[str(workers)] = {"events_per_second": statistics.median(rates), "runs": rates}
    return figures


def measure(stack: Stack, *, smoke: bool, runs: int, report: Callable[[str, dict[str, Any]], None]) -> dict[str, Any]:
    """All three measures on one PostgreSQL stack; ``report(name, figures)`` is told each as it completes."""
    if stack.engine.dialect.name != "postgresql":
        raise SystemExit("python -m bench --scale measures PostgreSQL: give --postgres URL or set TEST_POSTGRES_URL")
    ttls = (Settings.dedupe_ttl, *((ONE_WEEK,) if Settings.dedupe_ttl != ONE_WEEK else ()))
    sizes, events = ((100, 2_000), 400) if smoke else ((10_000, 1_000_000), 20_000)
    # Redis first, before any worker runs (a quick stack keeps them); then one worker; then more.
    steps = (("redis", lambda: bench_redis(stack, 200 if smoke else 20_000, 2_000 if smoke else 200_000, ttls)),
             ("rows", lambda: bench_rows(stack, sizes, events, runs)),
             ("workers", lambda: bench_workers(stack, (1, 2, 4), events, runs)))  # fmt: skip
    results: dict[str, Any] = {}
    for name, step in steps:
        results[name] = step()
        report(name, results[name])
    return results


ONE_WEEK = 7 * 24 * 3600


def table(results: dict[str, Any]) -> str:
    """The figures as the README shows them."""
    rows_figures, redis_figures, workers = results["rows"], results["redis"], results["workers"]
    lines = []
    for size, value in rows_figures.items():
        if size != "ratio":
            lines.append((f"mirror throughput, {int(size):,} records stored, 1 worker", f"{value['events_per_second']:,.0f} events/s"))
    lines.append(("  largest / smallest", f"{rows_figures['ratio']:.0%}"))
    lines.append((f"Redis per waiting delivery (~{redis_figures['body_bytes']:.0f}-byte body)", f"{redis_figures['per_waiting_delivery']:,.0f} bytes"))
    lines.append(("Redis per remembered event id (16 characters)", f"{redis_figures['per_remembered_id']:,.0f} bytes"))
    lines.append(("  MEMORY USAGE of one seen key", f"{redis_figures['memory_usage_seen_key']:,} bytes"))
    for ttl, by_rate in redis_figures["window"].items():
        sizes = ", ".join(f"{rate}/s {_human(size)}" for rate, size in by_rate.items())
        lines.append((f"deduplication window of {int(ttl) / 3600:g} h", sizes))
    for count, value in workers.items():
        lines.append((f"mirror throughput, {count} worker(s), empty mirror", f"{value['events_per_second']:,.0f} events/s"))
    width = max(len(name) for name, _ in lines)
    return "\n".join([f"{'measure':{width}}  figure", "-" * (width + 40)] + [f"{name:{width}}  {figure}" for name, figure in lines])


def _human(size: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if size >= scale:
            return f"{size / scale:,.1f} {unit}"
    return f"{size:.0f} B"
