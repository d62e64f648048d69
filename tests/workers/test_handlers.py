"""Custom handlers: isolation, retries, timeouts, the failed list, ordering, concurrency."""

from __future__ import annotations

import sys
import threading
import time
import types
from datetime import UTC, datetime, timedelta

import pytest
import redis
import sqlalchemy
from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from config import Settings
from config.job_contract import deliveries_key, delivery_mac_keys, pack_delivery, seen_key
from receiver.delivery_queue import DeliveryQueue, Enqueued
from tests.events import event_body
from tests.workers.conftest import MakeRuntime, deliver, ledger_row, run_row, statuses
from workers import database, failed, handler_runs, ledger, processing, shutdown
from workers.delivery_batches import DeliveryBatches
from workers.discovery import HandlerLoadError, load_registry
from workers.events import Event
from workers.handlers import DoNotRetry, HandlerOptions, handler
from workers.models import HandlerRun, LedgerEntry, MirroredRecord
from workers.recovery import requeue_stuck_runs
from workers.registry import HandlerRegistry, default_registry


def registry_of(**handlers: tuple) -> HandlerRegistry:
    registry = default_registry()
    for name, (function, options) in handlers.items():
        registry.register(function, name=name, **options)
    return registry


def mirrored_ids(engine: sqlalchemy.Engine) -> set[str]:
    with Session(engine) as session:
        return set(session.scalars(select(MirroredRecord.event_id)))


def test_a_failing_handler_does_not_touch_the_mirror_or_the_others(make_runtime: MakeRuntime, engine: sqlalchemy.Engine) -> None:
    seen: list[str] = []

    def broken(event: Event, session: Session) -> None:
        raise RuntimeError("crm is down")

    runtime = make_runtime(registry_of(broken=(broken, {}), fine=(lambda event, session: seen.append(event.id), {})), handler_attempts=3)
    deliver(runtime, ("evt_1", event_body("evt_1")))
    assert mirrored_ids(engine) == {"evt_1"}
    assert seen == ["evt_1"]
    assert statuses(engine, "fine") == {"evt_1": "succeeded"}
    run = run_row(engine, "evt_1", "broken")
    assert (run.status, run.attempts) == ("retrying", 1) and "RuntimeError: crm is down" in run.last_error
    assert ledger_row(engine, "evt_1").status == "pending"
    [retry] = runtime.handler_queue.scheduled_job_registry.get_job_ids()  # the next attempt, with back-off
    assert runtime.handler_queue.fetch_job(retry).args == ["broken", ["evt_1"], "retry"]  # JSON: a list


def test_retries_until_the_last_attempt_then_the_failed_list(make_runtime: MakeRuntime, engine: sqlalchemy.Engine, redis_client: redis.Redis) -> None:
    calls: list[str] = []

    def flaky(event: Event, session: Session) -> None:
        calls.append(event.id)
        if len(calls) < 3:
            raise ConnectionError(f"attempt {len(calls)} failed")
        session.execute(text("UPDATE aiwyn_records SET attributes = '{\"touched\": true}'"))  # its write commits with its run

    def hopeless(event: Event, session: Session) -> None:
        raise ValueError("never works")

    runtime = make_runtime(registry_of(flaky=(flaky, {}), hopeless=(hopeless, {"attempts": 2})), handler_attempts=4)
    redis_client.set(seen_key("evt_1"), "1")
    deliver(runtime, ("evt_1", event_body("evt_1")))
    for _ in range(3):  # what the scheduled retry jobs do
        for name in ("flaky", "hopeless"):
            handler_runs.run_handler(runtime, name, ["evt_1"], "retry")
    flaky_run, hopeless_run = run_row(engine, "evt_1", "flaky"), run_row(engine, "evt_1", "hopeless")
    assert (flaky_run.status, flaky_run.attempts, flaky_run.last_error) == ("succeeded", 3, None)
    assert (hopeless_run.status, hopeless_run.attempts) == ("failed", 2) and "never works" in hopeless_run.last_error
    assert calls == ["evt_1"] * 3
    with Session(engine) as session:
        assert session.scalars(select(MirroredRecord.attributes)).one() == {"touched": True}
    assert ledger_row(engine, "evt_1").status == "failed"
    assert redis_client.get(seen_key("evt_1")) is None  # a redelivery will be queued again


def test_do_not_retry_fails_at_once(make_runtime: MakeRuntime, engine: sqlalchemy.Engine) -> None:
    def refuses(event: Event, session: Session) -> None:
        raise DoNotRetry("client has no CRM id")

    runtime = make_runtime(registry_of(refuses=(refuses, {})), handler_attempts=5)
    deliver(runtime, ("evt_1", event_body("evt_1")))
    run = run_row(engine, "evt_1", "refuses")
    assert (run.status, run.attempts) == ("failed", 1) and "client has no CRM id" in run.last_error
    assert runtime.handler_queue.scheduled_job_registry.count == 0


def test_a_hanging_handler_is_stopped_at_its_timeout(make_runtime: MakeRuntime, engine: sqlalchemy.Engine) -> None:
    def hangs(event: Event, session: Session) -> None:
        time.sleep(30)

    runtime = make_runtime(registry_of(hangs=(hangs, {"timeout": 0.5})))
    started = time.monotonic()
    deliver(runtime, ("evt_1", event_body("evt_1")), ("evt_2", event_body("evt_2", record_id="rec_2")))
    assert time.monotonic() - started < 5  # two events, each stopped after half a second
    assert statuses(engine, "hangs") == {"evt_1": "retrying", "evt_2": "retrying"}
    assert "timed out after 0.5 s" in run_row(engine, "evt_1", "hangs").last_error
    assert mirrored_ids(engine) == {"evt_1", "evt_2"}


def test_a_redelivery_re_runs_only_the_failed_handler(make_runtime: MakeRuntime, settings: Settings, engine: sqlalchemy.Engine, redis_client: redis.Redis) -> None:
    calls: list[str] = []
    fixed = threading.Event()

    def counted(event: Event, session: Session) -> None:
        calls.append("counted")

    def until_fixed(event: Event, session: Session) -> None:
        calls.append("until_fixed")
        if not fixed.is_set():
            raise DoNotRetry("not yet")

    runtime = make_runtime(registry_of(counted=(counted, {}), until_fixed=(until_fixed, {})))
    receiver = DeliveryQueue(settings, redis_client)
    body = event_body("evt_1")
    assert receiver.enqueue("evt_1", "sub_1", body) is Enqueued.QUEUED
    deliver(runtime, ("evt_1", body))
    assert ledger_row(engine, "evt_1").status == "failed"
    fixed.set()
    assert receiver.enqueue("evt_1", "sub_1", body) is Enqueued.QUEUED  # not swallowed by deduplication
    deliver(runtime, ("evt_1", body))
    assert calls == ["counted", "until_fixed", "until_fixed"]
    assert run_row(engine, "evt_1", "mirror").attempts == 1
    assert ledger_row(engine, "evt_1").status == "processed"


def test_two_workers_never_run_one_handler_twice(make_runtime: MakeRuntime, engine: sqlalchemy.Engine) -> None:
    calls: list[str] = []

    def slow(event: Event, session: Session) -> None:
        time.sleep(0.3)
        calls.append(event.id)

    runtime = make_runtime(registry_of(slow=(slow, {})))
    processing.process_batch(runtime, [("evt_1", "sub_1", event_body("evt_1"))])
    outcomes: list[dict[str, str]] = []
    threads = [threading.Thread(target=lambda: outcomes.append(handler_runs.run_handler(runtime, "slow", ["evt_1"]))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert calls == ["evt_1"]
    assert sorted(o["evt_1"] for o in outcomes) == ["not claimable", "succeeded"]


def test_an_ordered_handler_skips_changes_older_than_what_it_has_seen(make_runtime: MakeRuntime, engine: sqlalchemy.Engine) -> None:
    seen: list[int] = []
    runtime = make_runtime(registry_of(ordered=(lambda event, session: seen.append(event.record.version), {"ordered": True})))
    for version in (1, 3, 2, 4):
        deliver(runtime, (f"evt_{version}", event_body(f"evt_{version}", version=version)))
    assert seen == [1, 3, 4]
    assert statuses(engine, "ordered")["evt_2"] == "skipped"
    assert ledger_row(engine, "evt_2").status == "processed"


def test_handlers_match_entity_types_and_operations(make_runtime: MakeRuntime) -> None:
    seen: list[str] = []
    runtime = make_runtime(registry_of(clients=(lambda e, s: seen.append(e.id), {"entity_types": "client", "operations": ["CREATE", "UPDATE"]})))
    deliver(
        runtime,
        ("evt_1", event_body("evt_1", operation="CREATE")),
        ("evt_2", event_body("evt_2", operation="DELETE", record_id="rec_2")),
        ("evt_3", event_body("evt_3", entity_type="contact", record_id="rec_3")),
    )
    assert seen == ["evt_1"]


def test_handlers_are_found_from_the_setting_and_labelled_with_the_decorator(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("my_handlers")

    @handler("client", ["CREATE", "UPDATE"], timeout=3, attempts=2)
    def notify(event: Event, session: Session) -> None: ...

    @handler(name="audit", ordered=True)
    class Audit:
        def handle(self, event: Event, session: Session) -> None: ...

    for value in (notify, Audit):
        value.__module__, value.__qualname__ = "my_handlers", value.__name__  # as if defined in that module
        setattr(module, value.__name__, value)
    module.handler = handler  # imported names without a label are ignored
    monkeypatch.setitem(sys.modules, "my_handlers", module)
    registry = load_registry(replace_settings(settings, handler_modules=("my_handlers",)), use_entry_points=False)
    assert [r.name for r in registry] == ["mirror", "my_handlers.notify", "audit"]
    notify_registration = registry.get("my_handlers.notify")
    assert (notify_registration.entity_types, notify_registration.operations) == ({"client"}, {"CREATE", "UPDATE"})
    assert notify_registration.options == HandlerOptions(timeout=3, attempts=2)
    assert registry.get("audit").options.ordered


def test_a_handler_module_that_fails_to_import_stops_the_start(settings: Settings) -> None:
    with pytest.raises(HandlerLoadError, match=r"module no_such_module_here .*ModuleNotFoundError"):
        load_registry(replace_settings(settings, handler_modules=("no_such_module_here",)), use_entry_points=False)


def replace_settings(settings: Settings, **changes: object) -> Settings:
    from dataclasses import replace

    return replace(settings, **changes)


def test_a_stop_request_hands_the_rest_of_a_handler_job_over(make_runtime: MakeRuntime, engine: sqlalchemy.Engine) -> None:
    def slow(event: Event, session: Session) -> None:
        shutdown.stopping.set()  # SIGTERM arrives while the first event is handled

    runtime = make_runtime(registry_of(slow=(slow, {})))
    try:
        follow_ups = deliver(runtime, *[(f"evt_{i}", event_body(f"evt_{i}", record_id=f"rec_{i}")) for i in range(3)], run_follow_ups=False)
        outcomes = handler_runs.run_handler(runtime, "slow", follow_ups.runs["slow"], "new", follow_ups.claimed_at)
    finally:
        shutdown.stopping.clear()
    assert outcomes == {"evt_0": "succeeded"}
    [job] = runtime.handler_queue.jobs
    assert job.args == ["slow", ["evt_1", "evt_2"], "new", follow_ups.claimed_at.isoformat()]  # JSON: a list, the time in ISO 8601
    assert statuses(engine, "slow") == {"evt_0": "succeeded", "evt_1": "pending", "evt_2": "pending"}


def test_a_second_job_for_the_delivery_that_failed_does_not_run_the_handler_again(make_runtime: MakeRuntime, engine: sqlalchemy.Engine) -> None:
    calls: list[str] = []

    def refuses(event: Event, session: Session) -> None:
        calls.append(event.id)
        raise DoNotRetry("no")

    runtime = make_runtime(registry_of(refuses=(refuses, {})))
    claimed_at = datetime.now(UTC)
    raw = [("evt_1", "sub_1", event_body("evt_1"))]
    follow_ups = processing.process_batch(runtime, raw, claimed_at)
    handler_runs.run_handler(runtime, "refuses", follow_ups.runs["refuses"], "new", claimed_at)
    assert run_row(engine, "evt_1", "refuses").status == "failed"
    # The same follow-up job queued twice, and the batch taken over after its lease: its claim time stays.
    again = processing.process_batch(runtime, raw, claimed_at)
    for _ in range(2):
        assert handler_runs.run_handler(runtime, "refuses", again.runs["refuses"], "new", claimed_at) == {"evt_1": "not claimable"}
    assert calls == ["evt_1"]
    # A redelivery, claimed after the failure, runs it again.
    deliver(runtime, ("evt_1", event_body("evt_1")))
    assert calls == ["evt_1", "evt_1"]


def test_a_batch_taken_over_keeps_the_time_it_was_first_claimed(settings: Settings, redis_client: redis.Redis) -> None:
    batches = DeliveryBatches(settings, redis_client, lease_seconds=60)
    redis_client.rpush(deliveries_key(settings.queue_name), pack_delivery("evt_1", "sub_1", b"{}", delivery_mac_keys(settings.secrets_key)[0]))
    before = datetime.now(UTC)
    first = batches.claim(10)
    assert before - timedelta(seconds=1) < first.claimed_at <= datetime.now(UTC)
    batches.abandon(first, retry_in=0)
    time.sleep(1.1)  # the abandon takes Redis' whole seconds
    taken_over = batches.claim(10)
    assert (taken_over.key, taken_over.claimed_at) == (first.key, first.claimed_at)


def test_a_replay_gets_a_fresh_set_of_attempts(make_runtime: MakeRuntime, engine: sqlalchemy.Engine) -> None:
    def hopeless(event: Event, session: Session) -> None:
        raise ConnectionError("still down")

    runtime = make_runtime(registry_of(hopeless=(hopeless, {"attempts": 2})))
    deliver(runtime, ("evt_1", event_body("evt_1")))
    handler_runs.run_handler(runtime, "hopeless", ["evt_1"], "retry")
    assert (run_row(engine, "evt_1", "hopeless").status, run_row(engine, "evt_1", "hopeless").attempts) == ("failed", 2)
    [failed_run] = failed.find(engine, failed.Filter())
    assert failed.replay(runtime, [failed_run]) == {"retrying": 1}  # one transient error is not the end
    run = run_row(engine, "evt_1", "hopeless")
    assert (run.status, run.attempts, run.attempt_base) == ("retrying", 3, 2)
    handler_runs.run_handler(runtime, "hopeless", ["evt_1"], "retry")
    run = run_row(engine, "evt_1", "hopeless")
    assert (run.status, run.attempts, run.attempt_base) == ("failed", 4, 2)


def test_two_handlers_of_one_event_settling_at_once_leave_it_processed(make_runtime: MakeRuntime, engine: sqlalchemy.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = make_runtime(registry_of(a=(lambda e, s: None, {}), b=(lambda e, s: None, {})))
    deliver(runtime, ("evt_1", event_body("evt_1")), run_follow_ups=False)

    def mark(handler: str, status: str) -> None:
        with Session(engine) as session, session.begin():
            session.execute(update(HandlerRun).where(HandlerRun.handler == handler).values(status=status))

    def settle() -> None:
        with Session(engine) as session, session.begin():
            ledger.settle(session, ["evt_1"])

    paused, resume = threading.Event(), threading.Event()
    now_for = database.now_for

    def slow_now_for(bind: object) -> object:
        if threading.current_thread().name == "first":  # between reading the runs and writing the ledger
            paused.set()
            resume.wait(5)
        return now_for(bind)

    monkeypatch.setattr(ledger, "now_for", slow_now_for)  # settle reads the clock through ledger
    mark("a", "succeeded")
    mark("b", "running")
    first = threading.Thread(target=settle, name="first")  # a's worker settles while b still runs
    first.start()
    assert paused.wait(5)
    mark("b", "succeeded")
    second = threading.Thread(target=settle, name="second")  # b's worker settles
    second.start()
    second.join(1)  # with the row locked, it waits for the first
    resume.set()
    first.join(5)
    second.join(5)
    assert ledger_row(engine, "evt_1").status == "processed"


def test_runs_that_cannot_start_go_to_the_failed_list_with_the_reason(make_runtime: MakeRuntime, engine: sqlalchemy.Engine) -> None:
    runtime = make_runtime(registry_of(gone=(lambda e, s: None, {}), kept=(lambda e, s: None, {})))
    for event_id in ("evt_1", "evt_2"):
        deliver(runtime, (event_id, event_body(event_id, record_id=f"rec_{event_id}")), run_follow_ups=False)
    with Session(engine) as session, session.begin():  # a payload the parser of a newer release refuses
        session.execute(update(LedgerEntry).where(LedgerEntry.event_id == "evt_2").values(payload="{not json"))
    other = make_runtime(registry_of(kept=(lambda e, s: None, {})))  # a worker without "gone"
    assert handler_runs.run_handler(other, "kept", ["evt_1", "evt_2"]) == {"evt_1": "succeeded", "evt_2": "failed"}
    assert "the stored payload no longer parses" in run_row(engine, "evt_2", "kept").last_error
    assert {(r.event_id, r.handler) for r in failed.find(engine, failed.Filter())} == {("evt_2", "kept")}
    assert ledger_row(engine, "evt_2").status == "failed"


def test_a_job_for_a_handler_this_worker_lacks_leaves_the_run_to_one_that_has_it(make_runtime: MakeRuntime, engine: sqlalchemy.Engine) -> None:
    calls: list[str] = []
    full = make_runtime(registry_of(new=(lambda e, s: calls.append(e.id), {})))
    deliver(full, ("evt_1", event_body("evt_1")), run_follow_ups=False)
    older = make_runtime(registry_of())  # a rolling deploy: this worker has not got "new" yet
    assert handler_runs.run_handler(older, "new", ["evt_1"]) == {"evt_1": "handler not here"}
    assert run_row(engine, "evt_1", "new").status == "pending" and failed.find(engine, failed.Filter()) == []
    assert requeue_stuck_runs(older) == 0  # nor does its sweep take the run
    with Session(engine) as session, session.begin():  # the grace passes
        session.execute(update(HandlerRun).where(HandlerRun.event_id == "evt_1").values(updated_at=database.now_for(engine) - timedelta(hours=1)))
    assert requeue_stuck_runs(full) == 1
    [job] = full.handler_queue.jobs
    handler_runs.run_handler(full, *job.args)
    assert calls == ["evt_1"] and ledger_row(engine, "evt_1").status == "processed"


def test_a_handler_class_whose_constructor_raises_stops_the_start_naming_it(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("my_broken_handlers")

    @handler("client")
    class NeedsConfig:
        def __init__(self) -> None:
            raise KeyError("CRM_TOKEN")

        def handle(self, event: Event, session: Session) -> None: ...

    NeedsConfig.__module__, NeedsConfig.__qualname__ = "my_broken_handlers", "NeedsConfig"
    module.NeedsConfig = NeedsConfig
    monkeypatch.setitem(sys.modules, "my_broken_handlers", module)
    with pytest.raises(HandlerLoadError, match=r"module my_broken_handlers .*my_broken_handlers\.NeedsConfig failed to start: KeyError: 'CRM_TOKEN'"):
        load_registry(replace_settings(settings, handler_modules=("my_broken_handlers",)), use_entry_points=False)
