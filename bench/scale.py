"""``python -m bench --scale``: what the service costs as its work grows (PostgreSQL).

1. redis: bytes of Redis per waiting delivery and per remembered event id, from ``MEMORY
   USAGE`` and from ``used_memory`` over many (which also counts the expiry entry and the hash
   table), stored by the receiver's own script; the deduplication window's size at 10, 100
   and 1,000 events/s.
2. rows: mirror throughput from a pre-filled queue, one worker, with 10,000 and with 1,000,000
   records (and as many ledger rows and mirror runs) already stored, in two databases taking
   turns. Half the events update stored records spread over the whole table, half create and
   update records of their own.
3. workers: mirror throughput from a pre-filled queue with 1, 2 and 4 workers.

The stack (Redis, the emulator, the subscription) is ``bench.__main__.Stack``, handed in by
``python -m bench``; this module starts only the worker processes it times.
"""

from __future__ import annotations

import contextlib
import json
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import sqlalchemy
from rq import Queue

from bench.load import ENTITY_TYPES, event, push
from config.job_contract import JOB_SERIALIZER, deliveries_key, enqueue_drain, seen_key
from config.metrics_contract import arrivals_key
from config.settings import Settings
from config.settings import from_env as settings_from_env
from devstack.services import Process

if TYPE_CHECKING:
    from bench.__main__ import Stack

QUEUE = "aiwyn-events"
RATES = (10, 100, 1000)  # events/s at which the deduplication window is priced

# One row per seeded record, its CREATE in the ledger and the mirror's run of it, as an event would have left them:
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
"""
_SEED_RUNS = """
INSERT INTO aiwyn_handler_runs (event_id, handler, status, attempts, attempt_base, created_at, updated_at)
SELECT 'evt_s' || lpad(n::text, 8, '0'), 'mirror', 'succeeded', 1, 0, now(), now()
FROM generate_series(:start, :stop - 1) AS n
"""  # fmt: skip


def seed(stack: Stack, engine: sqlalchemy.Engine, count: int) -> float:
    """Store ``count`` seeded records, their ledger rows and the mirror's handler runs; returns the seconds taken.

    Vacuumed, analyzed and checkpointed afterwards, as a database that grew over time would
    be: the measurement then pays for neither the seed's bookkeeping nor its dirty pages.
    """
    started = time.monotonic()
    for low in range(0, count, 100_000):  # one transaction per 100,000 rows: WAL and memory stay bounded
        with engine.begin() as connection:
            values = {"start": low, "stop": min(count, low + 100_000), "subscription": stack.subscription_id}
            connection.execute(sqlalchemy.text(_SEED_RECORDS), values)
            connection.execute(sqlalchemy.text(_SEED_LEDGER), values)
            connection.execute(sqlalchemy.text(_SEED_RUNS), values)
    _maintain(engine, "VACUUM ANALYZE aiwyn_records, aiwyn_events, aiwyn_handler_runs", "CHECKPOINT")
    return time.monotonic() - started


def _maintain(engine: sqlalchemy.Engine, *statements: str) -> None:
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
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


class Workers:
    """Worker processes per database, each database with a queue of its own: fresh ones for every
    timed run, or, in a quick (smoke) run, kept ones, woken by a drain job (they can outnumber
    what a run asks for: a smoke run checks the harness, not the speed)."""

    def __init__(self, stack: Stack, quick: bool) -> None:
        self.stack = stack
        self.quick = quick
        self.kept: dict[str, list[Process]] = {}
        self.queues = {stack.database_url: QUEUE}
        self.started = 0

    def queue(self, database_url: str) -> str:
        """The queue of the workers on ``database_url``: the stack's own for its database."""
        return self.queues.setdefault(database_url, f"{QUEUE}-{len(self.queues)}")

    def _start(self, count: int, database_url: str) -> list[Process]:
        env = self.stack.env | {"DATABASE_URL": database_url, "AIWYN_RECEIVER_QUEUE": self.queue(database_url), "AIWYN_RECEIVER_LOG_LEVEL": "WARNING"}
        self.started += count
        return [Process("worker", [sys.executable, "-m", "workers", "work"], env, self.stack.directory / f"scale-worker{self.started - n}.log")
                for n in range(count)]  # fmt: skip

    def keep(self, count: int, database_url: str) -> None:
        """Quick runs: at least ``count`` workers on ``database_url`` from now."""
        kept = self.kept.setdefault(database_url, [])
        kept.extend(self._start(max(0, count - len(kept)), database_url))

    @contextlib.contextmanager
    def running(self, count: int, database_url: str) -> Iterator[None]:
        """``count`` workers on ``database_url``; fresh ones look for waiting deliveries as they start."""
        if self.quick:
            self.keep(count, database_url)
            settings = settings_from_env(self.stack.env | {"AIWYN_RECEIVER_QUEUE": self.queue(database_url)})
            enqueue_drain(Queue(settings.queue_name, connection=self.stack.redis, serializer=JOB_SERIALIZER), settings)
            yield
            return
        processes = self._start(count, database_url)
        try:
            yield
        finally:
            for process in processes:
                process.stop(self.stack.stop_timeout)

    def stop(self) -> None:
        for processes in self.kept.values():
            for process in processes:
                process.stop(0.0)


def timed_drain(stack: Stack, workers: Workers, count: int, mirror: tuple[str, sqlalchemy.Engine], events: list[tuple[str, bytes]]) -> float:
    """Events/s from the first committed row to the last, ``count`` workers draining ``events`` into ``mirror`` (URL, engine).

    Counted in the ledger by event id range (an index-only scan), so polling stays cheap with a
    million rows stored; every id of a run shares its prefix.
    """
    ids = sorted(event_id for event_id, _ in events)
    count_sql = sqlalchemy.text("SELECT count(*) FROM aiwyn_events WHERE event_id BETWEEN :low AND :high")
    url, engine = mirror
    push(stack, events, workers.queue(url))
    pushed, first, first_count = time.monotonic(), None, 0
    done, deadline = 0, time.monotonic() + 600
    with workers.running(count, url), engine.connect() as connection:
        while time.monotonic() < deadline:
            done = connection.execute(count_sql, {"low": ids[0], "high": ids[-1]}).scalar_one()
            connection.commit()
            now = time.monotonic()
            if done and first is None:
                first, first_count = now, done
            if done >= len(ids):
                if first_count == len(ids):  # all at the first look (kept workers, tiny counts): timed from the push
                    return len(ids) / (now - pushed)
                return (len(ids) - first_count) / max(now - first, 1e-6)
            time.sleep(0.05)
    raise RuntimeError(f"only {done} of {len(ids)} events mirrored after 600 s; see the worker logs in {stack.directory}")


def bench_rows(stack: Stack, workers: Workers, databases: dict[int, str], count: int, runs: int) -> dict[str, Any]:
    """Mirror throughput (1 worker) with each number of records stored, each in its own database.

    The databases take turns, run by run and in alternating order, so that a busy moment of the
    machine weighs on both sides of a pair; the ratio reported is the median of the pairs'
    ratios. Beside each pair, the database's share alone: the batch path
    (``workers.processing.process_batch``) run in this process on a fifth of the events,
    without Redis, RQ or a worker's start-up.
    """
    from workers.processing import process_batch
    from workers.runtime import start_runtime

    runtimes = {size: start_runtime(settings_from_env(stack.env | {"DATABASE_URL": url})) for size, url in databases.items()}
    figures: dict[str, Any] = {}
    try:
        for size, runtime in runtimes.items():
            figures[str(size)] = {"seed_seconds": seed(stack, runtime.engine, size), "runs": [], "batch_path_runs": []}
        for run in range(runs):
            for size, runtime in sorted(runtimes.items(), reverse=run % 2 == 1):
                changes = mixed_events(count, stack.subscription_id, size, run, f"x{run}")
                figures[str(size)]["runs"].append(timed_drain(stack, workers, 1, (databases[size], runtime.engine), changes))
                _forget_run(runtime.engine, f"x{run}")
                raw = [(event_id, stack.subscription_id, body) for event_id, body in mixed_events(count // 5, stack.subscription_id, size, run, f"y{run}")]
                started, batch = time.perf_counter(), runtime.settings.batch_size
                for low in range(0, len(raw), batch):
                    process_batch(runtime, raw[low : low + batch])
                figures[str(size)]["batch_path_runs"].append(len(raw) / (time.perf_counter() - started))
                _forget_run(runtime.engine, f"y{run}")
        for size, runtime in runtimes.items():
            value = figures[str(size)]
            value |= {"events_per_second": statistics.median(value["runs"]), "batch_path_events_per_second": statistics.median(value["batch_path_runs"]),
                      **_sizes(runtime.engine)}  # fmt: skip
    finally:
        for runtime in runtimes.values():
            runtime.engine.dispose()
    small, large = (figures[str(size)] for size in (min(databases), max(databases)))
    figures["ratio"] = statistics.median(b / a for a, b in zip(small["runs"], large["runs"], strict=True))
    figures["batch_path_ratio"] = statistics.median(b / a for a, b in zip(small["batch_path_runs"], large["batch_path_runs"], strict=True))
    return figures


def _forget_run(engine: sqlalchemy.Engine, prefix: str) -> None:
    """Delete a run's ledger rows and its own records, so that every run meets the same table sizes."""
    with engine.begin() as connection:
        for table in ("aiwyn_events", "aiwyn_handler_runs"):
            connection.execute(sqlalchemy.text(f"DELETE FROM {table} WHERE event_id BETWEEN :low AND :high"), {"low": f"evt_{prefix}", "high": f"evt_{prefix}~"})
        connection.execute(sqlalchemy.text("DELETE FROM aiwyn_records WHERE entity_type = ANY(:types) AND record_id BETWEEN :low AND :high"),
                           {"types": list(ENTITY_TYPES), "low": f"rec_{prefix}", "high": f"rec_{prefix}~"})  # fmt: skip
    _maintain(engine, "VACUUM aiwyn_records, aiwyn_events, aiwyn_handler_runs")


def _flush(stack: Stack) -> None:
    """Empty Redis but for the registered secrets, as ``Stack.reset`` does, leaving the tables alone."""
    secrets = stack.redis.dump("aiwyn:secrets")
    stack.redis.flushdb()
    if secrets:
        stack.redis.restore("aiwyn:secrets", 0, secrets)


def _sizes(engine: sqlalchemy.Engine) -> dict[str, int]:
    """Table and index sizes in bytes: where the database's growth goes."""
    with engine.connect() as connection:
        rows = connection.execute(sqlalchemy.text(
            "SELECT c.relname, pg_relation_size(c.oid) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'i') AND (c.relname LIKE '%aiwyn_records%' OR c.relname LIKE '%aiwyn_events%' OR c.relname LIKE '%aiwyn_handler_runs%')"
        )).all()  # fmt: skip
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
    # A cheaper structure, measured but not used: ids as fields of small hashes (~100 a hash, which
    # Redis keeps as a compact listpack), a set of hashes per hour, each expiring whole.
    empty = _used(r)
    with r.pipeline(transaction=False) as pipe:
        for n in range(ids):
            pipe.hset(f"aiwyn:bench:seen:{n % max(ids // 100, 1)}", f"evt_{n:012d}", "1")
            if n % 10_000 == 9_999:
                pipe.execute()
        pipe.execute()
    per_id_in_small_hashes = (_used(r) - empty) / ids
    _flush(stack)
    return {
        "body_bytes": body_bytes,
        "per_waiting_delivery": lists / deliveries,
        "per_remembered_id": per_id,
        "per_remembered_id_in_small_hashes": per_id_in_small_hashes,
        "memory_usage_seen_key": seen_key_usage,
        "used_memory_per_enqueue": (queued - start) / deliveries,  # all the script stores for one delivery, its id included
        "deliveries_measured": deliveries,
        "ids_measured": ids,
        "window": {str(ttl): {str(rate): per_id * rate * ttl for rate in RATES} for ttl in ttls},
    }


def _used(r: Any) -> int:
    return int(r.info("memory")["used_memory"])


def bench_workers(stack: Stack, workers: Workers, counts: tuple[int, ...], events: int, runs: int) -> dict[str, Any]:
    """Mirror throughput into the stack's empty mirror with each number of workers, the counts taking turns run by run."""
    figures: dict[str, Any] = {str(workers): {"runs": []} for workers in counts}
    for run in range(runs):
        for count in counts:
            stack.reset()
            changes = [event(n, stack.subscription_id, max(events // 4, 1), f"w{count}{run}") for n in range(events)]
            figures[str(count)]["runs"].append(timed_drain(stack, workers, count, (stack.database_url, stack.engine), changes))
    for value in figures.values():
        value["events_per_second"] = statistics.median(value["runs"])
    return figures


def measure(stack: Stack, large: str, *, smoke: bool, runs: int, report: Callable[[str, dict[str, Any]], None]) -> dict[str, Any]:
    """All three measures; ``stack`` runs on an empty PostgreSQL database, ``large`` is a second one
    (migrated, empty) for the larger mirror. ``report(name, figures)`` is told each as it completes."""
    ttls = (Settings.dedupe_ttl, *((ONE_WEEK,) if Settings.dedupe_ttl != ONE_WEEK else ()))
    (small_size, large_size), events = ((100, 1_000), 200) if smoke else ((10_000, 1_000_000), 20_000)
    workers = Workers(stack, quick=smoke)
    counts = (1, 2, 4)
    # Rows before workers: the workers' runs empty the stack's database by DELETE, which leaves its files large.
    steps = (("redis", lambda: bench_redis(stack, 200 if smoke else 20_000, 2_000 if smoke else 200_000, ttls)),
             ("rows", lambda: bench_rows(stack, workers, {small_size: stack.database_url, large_size: large}, events, runs)),
             ("workers", lambda: bench_workers(stack, workers, counts, events, runs)))  # fmt: skip
    results: dict[str, Any] = {}
    try:
        for name, step in steps:
            if smoke and name == "rows":  # after the Redis figures: kept workers would drain what they measure
                workers.keep(max(counts), stack.database_url)
                workers.keep(1, large)
            results[name] = step()
            report(name, results[name])
    finally:
        workers.stop()
    return results


ONE_WEEK = 7 * 24 * 3600


def table(results: dict[str, Any]) -> str:
    """The figures as the README shows them."""
    rows_figures, redis_figures, workers = results["rows"], results["redis"], results["workers"]
    lines = []
    for size, value in rows_figures.items():
        if not size.endswith("ratio"):
            lines.append((f"mirror throughput, {int(size):,} records stored, 1 worker", f"{value['events_per_second']:,.0f} events/s"))
    lines.append(("  largest / smallest (median of the pairs)", f"{rows_figures['ratio']:.0%}"))
    for size, value in rows_figures.items():
        if not size.endswith("ratio"):
            lines.append((f"  the batch path alone (in process), {int(size):,} records", f"{value['batch_path_events_per_second']:,.0f} events/s"))
    lines.append(("  largest / smallest, batch path alone", f"{rows_figures['batch_path_ratio']:.0%}"))
    lines.append((f"Redis per waiting delivery (~{redis_figures['body_bytes']:.0f}-byte body)", f"{redis_figures['per_waiting_delivery']:,.0f} bytes"))
    lines.append(("Redis per remembered event id (16 characters)", f"{redis_figures['per_remembered_id']:,.0f} bytes"))
    lines.append(("  MEMORY USAGE of one seen key", f"{redis_figures['memory_usage_seen_key']:,} bytes"))
    lines.append(("  as fields of small hashes (not used)", f"{redis_figures['per_remembered_id_in_small_hashes']:,.0f} bytes"))
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
