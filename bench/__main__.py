"""``python -m bench``: the real stack on loopback, measured; a table on stdout and a JSON file.

1. ingest: the real endpoint (all checks, verify, dedupe, enqueue) against a bare Flask
   endpoint, both under gunicorn with the service's settings, loaded by wrk; workers stopped.
2. workers: events/s from a pre-filled queue to committed rows, SQLite and PostgreSQL, 1 and 2
   worker processes (timed from the first row committed to the last, so start-up is excluded).
3. latency: POST to row visible, at a steady rate, workers idle and waiting.
4. burst: N events posted by wrk as fast as it can; time until all are mirrored.
5. backfill: ``python -m workers backfill`` of N records from the emulator's listing into an
   empty mirror, the whole command timed (start-up included).
6. views: a query through the typed view ``aiwyn_client`` over N mirrored clients, with an
   equality filter on a text field and on an integer field.
Each figure is the median of ``--runs`` runs (ingest: of ``--pairs`` alternating pairs, with the
CPU each side spends per request). Load, service and databases share this machine.
``--scale`` measures the cost as the work grows instead (``bench/scale.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy
from rq import Queue

from bench.ingest import Endpoint, compare
from bench.load import event, push, run_wrk, write_requests
from config.job_contract import JOB_SERIALIZER, enqueue_drain
from config.redis_connection import connect
from config.settings import from_env as settings_from_env
from devstack.databases import clear_tables, throwaway_database
from devstack.services import REGISTER_ONLY, ROOT, Process, free_port, local_secrets_key, run_release, start_web
from devstack.stack import LocalStack, emulator_api, stack_env
from workers.database import make_engine
from workers.models import MirroredRecord

QUEUE = "aiwyn-events"
RECEIVER_APP = "receiver:create_app()"
BARE_APP = "bench.bare_app:app"
STORE_APP = "bench.store_app:app"
CLIENT = ("bench", "bench-secret")


class Stack:
    """Redis, the emulator (for the subscription and its secret), migrations and registration done.

    ``quick`` (the smoke run) keeps one web process per app for the whole run, kills processes
    instead of stopping them gracefully and skips the waits that only make the figures steady:
    it checks the harness, not the speed.
    """

    def __init__(self, directory: Path, database_url: str, *, quick: bool = False, redis_url: str | None = None) -> None:
        self.directory = directory
        self.database_url = database_url
        self.quick = quick
        self.stop_timeout = 0.0 if quick else 10.0
        self.processes: list[Process] = []
        self.kept_web: dict[str, tuple[Process, int]] = {}
        self.kept_workers: list[Process] = []
        self.last_web: Process | None = None  # the web process ``web()`` started last
        self.port = free_port()
        env = stack_env(
            database_url,
            port=self.port,
            client=CLIENT,
            secrets_key=local_secrets_key(directory / "secrets.key"),
            retry_schedule="3600",
        )
        if quick:
            env["AIWYN_RECEIVER_WEB_WORKERS"] = "1"  # fewer processes to start on a small machine
        if redis_url:
            env["REDIS_URL"] = redis_url  # a Redis of the caller's (``bench.replicas``: a Sentinel set)
        # Redis and the emulator here; web processes and workers start per phase.
        self.local = LocalStack(directory, env).start(release=(), web=False, workers=0)
        self.env = env
        # The rest of the release (``main`` has migrated): the typed views and registration, side by
        # side, and beside them, in quick runs, the bare endpoint, which needs neither.
        steps: list[Callable[[], object]] = [
            lambda: run_release(self.env, directory / "release-views.log", (("workers", "views"),)),
            lambda: run_release(self.env, directory / "release-register.log", REGISTER_ONLY),
        ]
        if quick:
            steps.append(lambda: self.keep_web(BARE_APP))
        with ThreadPoolExecutor(len(steps)) as pool:
            for done in [pool.submit(step) for step in steps]:
                done.result()
        self.api = api = emulator_api(self.env["AIWYN_BASE_URL"], *CLIENT)
        [subscription] = api.get("/api/v1/event-subscriptions").json()["data"]["subscriptions"]
        self.subscription_id = subscription["id"]
        self.secret = api.get(f"/api/v1/event-subscriptions/{self.subscription_id}/secret").json()["data"]["secrets"][0]["secret"]
        self.redis = connect(self.env["REDIS_URL"])
        self.engine = make_engine(database_url)

    def keep_web(self, *apps: str) -> None:
        """Quick runs: start these web processes side by side now, kept until ``stop``."""
        with ThreadPoolExecutor(len(apps)) as pool:
            list(pool.map(self._keep_web, apps))

    def _keep_web(self, app: str) -> None:
        # Kept web processes each need a port of their own; the receiver's is the one registered.
        port = self.port if app == RECEIVER_APP else free_port()
        process = start_web(self.env | {"PORT": str(port)}, self.directory / f"web-{port}.log", port, app)
        self.kept_web[app] = (process, port)
        self.processes.append(process)

    @property
    def queue(self) -> str:
        return QUEUE

    @contextlib.contextmanager
    def web(self, app: str = RECEIVER_APP, **settings: str) -> Iterator[str]:
        """A web process of ``app`` for the block (``settings``: environment added to the stack's)."""
        if settings and (self.quick or app in self.kept_web):
            raise RuntimeError("kept web processes run on the stack's settings only")
        if self.quick and app not in self.kept_web:
            self.keep_web(app)
        if app in self.kept_web:
            yield f"http://127.0.0.1:{self.kept_web[app][1]}"
            return
        # The receiver on the registered port; the bare endpoint, which may run beside it, on its own.
        port = self.port if app == RECEIVER_APP else free_port()
        process = self.last_web = start_web(self.env | settings | {"PORT": str(port)}, self.directory / f"web-{port}.log", port, app)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            process.stop(self.stop_timeout)

    @contextlib.contextmanager
    def workers(self, count: int) -> Iterator[None]:
        env = self.env | {"AIWYN_RECEIVER_LOG_LEVEL": "WARNING"}
        if self.quick:
            # Quick runs keep their workers (the phases ask for 1, 1, 1, then 2): only the count
            # asked for may be running, and a drain job wakes the kept ones for a pre-filled queue.
            if len(self.kept_workers) > count:
                raise RuntimeError(f"{len(self.kept_workers)} workers are kept; a quick run cannot go down to {count}")
            while len(self.kept_workers) < count:
                process = Process("worker", [sys.executable, "-m", "workers", "work"], env, self.directory / f"worker{len(self.kept_workers)}.log")
                self.kept_workers.append(process)
                self.processes.append(process)
            enqueue_drain(Queue(QUEUE, connection=self.redis, serializer=JOB_SERIALIZER), settings_from_env(self.env))
            yield
            return
        processes = [Process("worker", [sys.executable, "-m", "workers", "work"], env, self.directory / f"worker{n}.log") for n in range(count)]
        try:
            yield
        finally:
            for process in processes:
                process.stop(self.stop_timeout)

    def reset(self) -> None:
        """Empty queue, deduplication and tables between runs; keep the secrets registration stored."""
        secrets = self.redis.dump("aiwyn:secrets")
        self.redis.flushdb()
        if secrets:
            self.redis.restore("aiwyn:secrets", 0, secrets)
        clear_tables(self.engine)

    def processed(self) -> int:
        with self.engine.connect() as connection:
            return connection.execute(sqlalchemy.text("SELECT count(*) FROM aiwyn_events WHERE status = 'processed'")).scalar_one()

    def last_processed_at(self) -> datetime:
        with self.engine.connect() as connection:
            last = connection.execute(sqlalchemy.text("SELECT max(processed_at) FROM aiwyn_events")).scalar_one()
        if isinstance(last, str):  # SQLite keeps naive UTC text
            last = datetime.fromisoformat(last)
        return last if last.tzinfo else last.replace(tzinfo=UTC)

    def stop(self) -> None:
        self.engine.dispose()
        for process in reversed(self.processes):
            process.stop(self.stop_timeout)
        self.local.stop(self.stop_timeout)


def wait_for_count(stack: Stack, target: int, timeout: float) -> tuple[float, int, float]:
    """Poll until ``target`` events are processed; returns (time rows were first seen, how many then, time of the last)."""
    first, first_count = None, 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = stack.processed()
        now = time.monotonic()
        if done and first is None:
            first, first_count = now, done
        if done >= target:
            return first or now, first_count, now
        time.sleep(0.02)
    raise RuntimeError(f"only {stack.processed()} of {target} events processed after {timeout:.0f} s; see the worker logs in {stack.directory}")


def prefill(stack: Stack, count: int, records: int, prefix: str) -> None:
    """Put ``count`` verified deliveries in the queue as the receiver does, without the HTTP part."""
    push(stack, (event(n, stack.subscription_id, records, prefix) for n in range(count)), QUEUE)


def bench_ingest(stack: Stack, work: Path, seconds: float, pairs: int, app_under_test: str = RECEIVER_APP) -> dict[str, Any]:
    """The receiver (or another app) against the bare endpoint, both kept up: ``pairs`` alternating wrk runs (``bench.ingest``)."""
    with contextlib.ExitStack() as running:
        endpoints = {}
        for name, app in (("bare", BARE_APP), ("ingest", app_under_test)):
            url = running.enter_context(stack.web(app))
            process = stack.kept_web[app][0] if app in stack.kept_web else stack.last_web
            endpoints[name] = Endpoint(name, url, process.popen.pid)
        summary = compare(endpoints["bare"], endpoints["ingest"], pairs=pairs, seconds=seconds, work=work, secret=stack.secret,
                          subscription_id=stack.subscription_id, connection=stack.redis, reset=stack.reset, warm_up=not stack.quick)  # fmt: skip
    return summary | {"app": app_under_test}


def bench_workers(stack: Stack, count: int, workers: int, runs: int) -> dict[str, float]:
    rates = []
    for run in range(runs):
        stack.reset()
        prefill(stack, count, count // 4, f"w{run}")
        with stack.workers(workers):
            first, first_count, last = wait_for_count(stack, count, timeout=600)
        # Timed from the first committed rows (worker start-up excluded) to the last.
        rates.append((count - first_count) / max(last - first, 1e-6))
    return {"events_per_second": statistics.median(rates)}


def bench_latency(stack: Stack, rate: float, seconds: float, runs: int) -> dict[str, float]:
    samples: list[float] = []
    for run in range(runs):
        stack.reset()
        with stack.workers(1), stack.web() as url:
            if not stack.quick:
                time.sleep(1.0)  # workers idle and listening
            samples.extend(_steady_latencies(stack, url, rate, seconds, f"l{run}"))
    samples.sort()
    return {"p50_ms": statistics.median(samples), "p99_ms": samples[int(len(samples) * 0.99) - 1], "samples": len(samples)}


def _steady_latencies(stack: Stack, url: str, rate: float, seconds: float, prefix: str) -> list[float]:
    from receiver.signatures import decode_secret, sign

    key = decode_secret(stack.secret)
    sent: dict[str, float] = {}
    seen: dict[str, float] = {}
    stop = threading.Event()

    def watch() -> None:
        with stack.engine.connect() as connection:
            while not stop.is_set() or len(seen) < len(sent):
                rows = connection.execute(sqlalchemy.text("SELECT event_id FROM aiwyn_events WHERE status = 'processed'")).scalars()
                now = time.monotonic()
                for event_id in rows:
                    seen.setdefault(event_id, now)
                connection.commit()
                time.sleep(0.002)
                if stop.is_set() and time.monotonic() - stopped_at[0] > 30:
                    break

    stopped_at = [0.0]
    watcher = threading.Thread(target=watch)
    watcher.start()
    client = httpx.Client(timeout=10)
    try:
        for n in range(int(rate * seconds)):
            event_id, body = event(n, stack.subscription_id, 1_000_000, prefix)
            at = int(time.time())
            headers = {"Content-Type": "application/json", "webhook-id": event_id, "webhook-timestamp": str(at),
                       "webhook-signature": sign(key, event_id, at, body), "aiwyn-subscription-id": stack.subscription_id}  # fmt: skip
            sent[event_id] = time.monotonic()
            answer = client.post(f"{url}/webhooks/aiwyn", content=body, headers=headers)
            if answer.status_code != 202:
                raise RuntimeError(f"latency run: {answer.status_code} {answer.text}")
            time.sleep(max(0.0, sent[event_id] + 1 / rate - time.monotonic()))
    finally:
        stopped_at[0] = time.monotonic()
        stop.set()
        watcher.join()
        client.close()
    return [(seen[e] - sent[e]) * 1000 for e in sent if e in seen]


def bench_burst(stack: Stack, work: Path, count: int, workers: int, runs: int) -> dict[str, float]:
    mirrored, acknowledged = [], []
    for run in range(runs):
        stack.reset()
        requests = work / f"burst-{run}.tsv"
        # One spare: wrk builds one request that it never sends.
        write_requests(requests, stack.secret, stack.subscription_id, count + 1, count // 4, f"b{run}")
        with stack.workers(workers), stack.web() as url:
            if not stack.quick:
                time.sleep(1.0)  # workers idle and listening
            keys_before = stack.redis.dbsize()
            started = datetime.now(UTC)
            acked_at = _watch(lambda target=keys_before + count: stack.redis.dbsize() >= target)  # a seen key per acknowledged event
            sent = run_wrk(url, requests, max(1.0 if stack.quick else 10.0, count / 400), limit=count + 1)  # the workers mirror meanwhile
            if sent.non_2xx:
                raise RuntimeError(f"burst: {sent.non_2xx} answers were not 2xx; see the web logs in {stack.directory}")
            # Count what the receiver acknowledged: all of them, unless wrk's time ran out first.
            accepted = sum(1 for _ in stack.redis.scan_iter("aiwyn:seen:*", count=1000))
            if accepted < count or not acked_at:
                raise RuntimeError(f"burst: only {accepted} of {count} events were acknowledged; see the web logs in {stack.directory}")
            wait_for_count(stack, accepted, timeout=120)
            mirrored.append((stack.last_processed_at() - started).total_seconds())
            acknowledged.append((acked_at[0] - started).total_seconds())
    return {"seconds_to_mirror_all": statistics.median(mirrored), "seconds_to_acknowledge_all": statistics.median(acknowledged), "events": accepted}


def bench_view_query(stack: Stack, count: int, runs: int) -> dict[str, float]:
    stack.reset()
    now = datetime.now(UTC)
    rows = [
        {"entity_type": "client", "record_id": f"rec_{n:08d}", "system_ref": {"system": "bench", "id": str(n)}, "active": n % 10 != 0, "version": 1,
         "attributes": {"name": f"Client {n}", "clientNumber": f"C-{n}", "employeeCount": n % 500, "office": f"office-{n % 20}"},
         "occurred_at": now, "event_id": None, "updated_at": now, "source": "backfill"}
        for n in range(count)
    ]  # fmt: skip
    with stack.engine.begin() as connection:
        for start in range(0, count, 5000):
            connection.execute(MirroredRecord.__table__.insert(), rows[start : start + 5000])
        if stack.engine.dialect.name == "postgresql":
            connection.exec_driver_sql("ANALYZE aiwyn_records")
    figures = {}
    for name, sql in (("text_equality_ms", "SELECT count(*) FROM aiwyn_client WHERE client_number = 'C-4242'"),
                      ("integer_equality_ms", "SELECT count(*) FROM aiwyn_client WHERE employee_count = 120")):  # fmt: skip
        timings = []
        with stack.engine.connect() as connection:
            for _ in range(max(runs, 1) * 10):
                started = time.perf_counter()
                connection.exec_driver_sql(sql).scalar_one()
                timings.append((time.perf_counter() - started) * 1000)
        figures[name] = statistics.median(timings)
    return {"records": count, **figures}


def bench_backfill(stack: Stack, count: int, runs: int) -> dict[str, float]:
    # Seeded with no subscription to deliver to: only the backfill's reading and writing is measured.
    stack.api.delete(f"/api/v1/event-subscriptions/{stack.subscription_id}").raise_for_status()
    httpx.post(f"{stack.env['AIWYN_BASE_URL']}/_emulator/seed", json={"type": "client", "count": count}, timeout=120).raise_for_status()
    seconds = []
    for _run in range(runs):
        stack.reset()
        started = time.monotonic()
        command = subprocess.run([sys.executable, "-m", "workers", "backfill", "--type", "client"], env=stack.env, capture_output=True, text=True, timeout=600)
        seconds.append(time.monotonic() - started)
        if command.returncode != 0:
            raise RuntimeError(f"backfill: exit {command.returncode}: {command.stderr[-2000:]}")
        with stack.engine.connect() as connection:
            copied = connection.execute(sqlalchemy.text("SELECT count(*) FROM aiwyn_records")).scalar_one()
        if copied != count:
            raise RuntimeError(f"backfill: {copied} of {count} records in the mirror")
    median = statistics.median(seconds)
    return {"records": count, "seconds": median, "records_per_second": count / median}


def _watch(done: Callable[[], bool], every: float = 0.02, timeout: float = 300) -> list[datetime]:
    """In the background, note when ``done()`` first holds; the list is empty until then."""
    at: list[datetime] = []

    def poll() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if done():
                at.append(datetime.now(UTC))
                return
            time.sleep(every)

    threading.Thread(target=poll, daemon=True).start()
    return at


def database_urls(postgres: str | None, smoke: bool, directory: Path) -> Iterator[tuple[str, Callable[[], contextlib.AbstractContextManager[str]]]]:
    """(kind, a context that yields a fresh, migrated database URL)."""
    kinds = ["sqlite"] + ([] if smoke or not postgres else ["postgres"])
    for kind in kinds:
        yield kind, lambda kind=kind: throwaway_database(kind, directory / kind, postgres)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per figure; the median is reported (default 3)")
    parser.add_argument("--postgres", default=os.environ.get("TEST_POSTGRES_URL"), help="a PostgreSQL server URL whose user may create databases")
    parser.add_argument("--json", type=Path, help="where to write the results (default bench/results/<time>.json)")
    parser.add_argument("--smoke", action="store_true", help="a few seconds, tiny counts, SQLite only: checks the harness, not the speed")
    parser.add_argument("--min-replicas", type=int, default=0, metavar="N",
                        help="only this: ingest with AIWYN_RECEIVER_REDIS_MIN_REPLICAS=N against 0, alternating, on a Sentinel set of a primary and N replicas")
    parser.add_argument("--pairs", type=int, default=5, help="alternating bare/receiver wrk runs for the ingest figure; the median pair is reported (default 5)")
    parser.add_argument("--ingest-seconds", type=float, default=5, help="length of each of those wrk runs (default 5)")
    parser.add_argument("--only", choices=["ingest", "store"],
                        help="run this phase only (SQLite); store: the bare endpoint plus the storing Redis call alone, against the bare one")
    parser.add_argument("--scale", action="store_true", help="the cost as the work grows (bench/scale.py), PostgreSQL only; with --smoke, tiny counts")
    args = parser.parse_args(argv)
    # Stopped by SIGTERM: unwind, so that every process the run started is stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.scale:
        return main_scale(args)
    smoke = args.smoke
    runs = 1 if smoke else args.runs
    if args.min_replicas:
        from bench.replicas import main_replicas

        return main_replicas(lambda directory, url, redis_url: Stack(directory, url, redis_url=redis_url), args.min_replicas, runs, 1 if smoke else 10, args.json)
    events, burst, backfilled, viewed = (1000, 200, 500, 2000) if smoke else (20_000, 10_000, 50_000, 100_000)
    ingest_seconds, latency_seconds = (1, 0.5) if smoke else (args.ingest_seconds, 10)
    pairs = 1 if smoke else args.pairs
    results: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "at": datetime.now(UTC).isoformat(timespec="seconds")}, "smoke": smoke, "runs": runs}
    with tempfile.TemporaryDirectory(prefix="aiwyn-bench-") as tmp:
        work = Path(tmp)
        for kind, database in database_urls(args.postgres, smoke, work):
            with database() as url:
                from workers.migrate import upgrade

                upgrade(url)
                stack = Stack(work / f"stack-{kind}", url, quick=smoke)
                try:
                    if kind == "sqlite":
                        record(results, "ingest", bench_ingest(stack, work, ingest_seconds, pairs, STORE_APP if args.only == "store" else RECEIVER_APP))
                        if args.only:
                            break
                        record(results, "latency", bench_latency(stack, 20, latency_seconds, runs))
                    for workers in (1, 2):
                        record(results, f"workers_{kind}_{workers}", bench_workers(stack, events, workers, runs))
                    record(results, f"burst_{kind}", bench_burst(stack, work, burst, 2, runs))
                    record(results, f"views_{kind}", bench_view_query(stack, viewed, runs))
                    record(results, f"backfill_{kind}", bench_backfill(stack, backfilled, runs))  # last: it deactivates the subscription
                finally:
                    stack.stop()
    print(table(results))
    write(results, args.json or ROOT / "bench" / "results" / f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json")
    return 0


def main_scale(args: argparse.Namespace) -> int:
    """``--scale``: two throw-away PostgreSQL databases and one stack for ``bench.scale``'s measures."""
    from bench import scale
    from workers.migrate import upgrade

    if not args.postgres:
        raise SystemExit("python -m bench --scale measures PostgreSQL: give --postgres URL or set TEST_POSTGRES_URL")
    runs = 1 if args.smoke else args.runs
    results: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "at": datetime.now(UTC).isoformat(timespec="seconds")}, "smoke": args.smoke, "runs": runs}
    with contextlib.ExitStack() as cleanup:
        tmp = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="aiwyn-bench-")))
        # The stack's database, then a second one for the larger mirror (bench.scale.bench_rows).
        urls = [cleanup.enter_context(throwaway_database("postgres", tmp, args.postgres)) for _ in range(2)]
        for url in urls:
            upgrade(url)
        stack = Stack(tmp / "stack", urls[0], quick=args.smoke)
        cleanup.callback(stack.stop)
        results |= scale.measure(stack, urls[1], smoke=args.smoke, runs=runs, report=lambda name, figures: record({}, name, figures))
    print(scale.table(results))
    write(results, args.json or ROOT / "bench" / "results" / f"scale-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json")
    return 0


def write(results: dict[str, Any], target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten to {target}")


def record(results: dict[str, Any], name: str, figures: dict[str, Any]) -> None:
    results[name] = figures
    print(f"{name}: {json.dumps(figures)}", file=sys.stderr, flush=True)  # a long run shows its progress


def table(results: dict[str, Any]) -> str:
    ingest = results["ingest"]
    rows = [
        ("bare endpoint (gunicorn gthread, same settings)", f"{ingest['bare']['rps']:,.0f} req/s", f"p50 {ingest['bare']['p50_ms']:.1f} ms, p99 {ingest['bare']['p99_ms']:.1f} ms"),
        ("ingest: checks, verify, dedupe, enqueue" if ingest["app"] == RECEIVER_APP else f"{ingest['app']} (no checks, the store alone)", f"{ingest['ingest']['rps']:,.0f} req/s", f"p50 {ingest['ingest']['p50_ms']:.1f} ms, p99 {ingest['ingest']['p99_ms']:.1f} ms"),
        ("ingest / bare, median of alternating pairs", f"{ingest['ratio']:.0%}", f"{ingest['pairs']} pairs: " + " ".join(f"{r:.0%}" for r in ingest["ratios"])),
        ("ingest p99 / bare p99", f"{ingest['p99_over_bare']:.1f}x", ""),
        ("CPU per request: bare (web + Redis + wrk)", f"{ingest['bare']['total_us']:,.0f} µs",
         f"web {ingest['bare']['web_us']:,.0f}, Redis {ingest['bare']['redis_us']:,.0f}, wrk {ingest['bare']['wrk_us']:,.0f}"),
        ("CPU per request: ingest (web + Redis + wrk)", f"{ingest['ingest']['total_us']:,.0f} µs",
         f"web {ingest['ingest']['web_us']:,.0f}, Redis {ingest['ingest']['redis_us']:,.0f}, wrk {ingest['ingest']['wrk_us']:,.0f}"),
        ("bare CPU / ingest CPU (the ratio when CPU bounds both)", f"{ingest['cpu_ratio']:.0%}", ""),
    ]  # fmt: skip
    for key, value in results.items():
        if key.startswith("workers_"):
            _, kind, count = key.split("_")
            rows.append((f"mirror throughput, {kind}, {count} worker(s)", f"{value['events_per_second']:,.0f} events/s", ""))
    if latency := results.get("latency"):
        rows.append(("end-to-end latency, 20 req/s, idle workers", f"p50 {latency['p50_ms']:.1f} ms", f"p99 {latency['p99_ms']:.1f} ms"))
    for key, value in results.items():
        if key.startswith("burst_"):
            rows.append((f"burst of {'10,000' if not results['smoke'] else 'a few'} events, {key[6:]}, 2 workers", f"{value['seconds_to_mirror_all']:.1f} s to mirror all",
                         f"all acknowledged after {value['seconds_to_acknowledge_all']:.1f} s"))
    for key, value in results.items():
        if key.startswith("backfill_"):
            rows.append((f"backfill of {value['records']:,} records, {key[9:]} (the whole command)", f"{value['records_per_second']:,.0f} records/s", f"{value['seconds']:.1f} s"))
    for key, value in results.items():
        if key.startswith("views_"):
            rows.append((f"query through a typed view, {value['records']:,} clients, {key[6:]}", f"{value['text_equality_ms']:.1f} ms (text =)", f"{value['integer_equality_ms']:.1f} ms (integer =)"))
    width = max(len(r[0]) for r in rows)
    lines = [f"{'measure':{width}}  figure", "-" * (width + 40)]
    lines += [f"{name:{width}}  {figure}  {extra}".rstrip() for name, figure, extra in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
