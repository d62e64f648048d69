"""The failed list's functions: which runs ``find`` selects, and what ``replay`` and ``discard`` change."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta, timezone

import sqlalchemy
from sqlalchemy import update
from sqlalchemy.orm import Session

from tests.events import event_body
from tests.workers.conftest import MakeRuntime, deliver, ledger_row, run_row, statuses
from workers import failed, runs
from workers.events import Event
from workers.failed import Filter
from workers.handlers import DoNotRetry
from workers.models import HandlerRun
from workers.registry import HandlerRegistry, default_registry
from workers.runtime import WorkerRuntime

EVENTS = {"evt_1": "client", "evt_2": "contact", "evt_3": "client"}


class Handlers:
    """Two failing handlers ("a", "b": no retries until ``fixed``) and one that always succeeds ("fine"), counting calls."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.fixed = False

    def registry(self) -> HandlerRegistry:
        registry = default_registry()
        for name in ("a", "b"):
            registry.register(self._failing(name), name=name)
        registry.register(lambda event, session: self.calls.update(["fine"]), name="fine")
        return registry

    def _failing(self, name: str):
        def run(event: Event, session: Session) -> None:
            self.calls[name] += 1
            if not self.fixed:
                raise DoNotRetry(f"{name} rejects {event.id}")

        return run


def deliver_all(runtime: WorkerRuntime) -> None:
    for event_id, entity_type in EVENTS.items():
        deliver(runtime, (event_id, event_body(event_id, entity_type=entity_type, record_id=f"rec_{event_id}")))


def pairs(found: list[failed.FailedRun]) -> set[tuple[str, str]]:
    return {(run.event_id, run.handler) for run in found}


def set_time(engine: sqlalchemy.Engine, event_id: str, column: str, moment: datetime) -> None:
    """Move a column of an event's runs to a chosen time, as if they had failed (or been leased) then."""
    value = moment.replace(tzinfo=None) if engine.dialect.name == "sqlite" else moment
    with Session(engine) as session, session.begin():
        session.execute(update(HandlerRun).where(HandlerRun.event_id == event_id, HandlerRun.handler != "mirror").values({column: value}))


def test_find_filters_by_handler_entity_type_and_event_ids(make_runtime: MakeRuntime, engine: sqlalchemy.Engine) -> None:
    handlers = Handlers()
    deliver_all(make_runtime(handlers.registry()))
    everything = {(e, h) for e in EVENTS for h in ("a", "b")}
    assert pairs(failed.find(engine, Filter())) == everything  # neither "fine" nor the mirror: they succeeded
    assert pairs(failed.find(engine, Filter(handler="a"))) == {(e, "a") for e in EVENTS}
    assert pairs(failed.find(engine, Filter(entity_type="contact"))) == {("evt_2", "a"), ("evt_2", "b")}
    assert pairs(failed.find(engine, Filter(event_ids=("evt_1", "evt_3")))) == {(e, h) for e in ("evt_1", "evt_3") for h in ("a", "b")}
    assert pairs(failed.find(engine, Filter(event_ids=("evt_1", "evt_2"), handler="b", entity_type="client"))) == {("evt_1", "b")}
    assert failed.find(engine, Filter(handler="fine")) == []
    assert failed.find(engine, Filter(event_ids=("evt_unknown",))) == []
    [run] = failed.find(engine, Filter(event_ids=("evt_2",), handler="a"))
    assert (run.status, run.attempts, run.entity_type, run.operation, run.record_id) == ("failed", 1, "contact", "UPDATE", "rec_evt_2")
    assert run.last_error == "DoNotRetry: a rejects evt_2"
    assert '"id": "evt_2"' in run.payload


def test_find_filters_by_time_oldest_first_and_limits(make_runtime: MakeRuntime, engine: sqlalchemy.Engine) -> None:
    handlers = Handlers()
    deliver_all(make_runtime(handlers.registry()))
    base = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    for hours, event_id in enumerate(("evt_3", "evt_1", "evt_2")):  # evt_3 failed first, evt_2 last
        set_time(engine, event_id, "updated_at", base + timedelta(hours=hours))
    evt_1_failed = base + timedelta(hours=1)
    assert pairs(failed.find(engine, Filter(since=evt_1_failed))) == {(e, h) for e in ("evt_1", "evt_2") for h in ("a", "b")}  # inclusive
    assert pairs(failed.find(engine, Filter(until=evt_1_failed))) == {("evt_3", "a"), ("evt_3", "b")}  # exclusive
    assert pairs(failed.find(engine, Filter(since=evt_1_failed, until=evt_1_failed + timedelta(minutes=1)))) == {("evt_1", "a"), ("evt_1", "b")}
    # A time in another zone means the same moment.
    assert pairs(failed.find(engine, Filter(since=evt_1_failed.astimezone(timezone(timedelta(hours=2))), handler="a"))) == {("evt_1", "a"), ("evt_2", "a")}
    ordered = [(r.event_id, r.handler) for r in failed.find(engine, Filter())]
    assert ordered == [("evt_3", "a"), ("evt_3", "b"), ("evt_1", "a"), ("evt_1", "b"), ("evt_2", "a"), ("evt_2", "b")]
    assert [(r.event_id, r.handler) for r in failed.find(engine, Filter(), limit=3)] == ordered[:3]
    assert [(r.event_id, r.handler) for r in failed.find(engine, Filter(handler="b"), limit=2)] == [("evt_3", "b"), ("evt_1", "b")]


def test_a_run_past_its_lease_is_listed_and_a_retrying_one_is_not(make_runtime: MakeRuntime, engine: sqlalchemy.Engine) -> None:
    def flaky(event: Event, session: Session) -> None:
        if event.id == "evt_retrying":
            raise ConnectionError("try later")

    registry = default_registry()
    registry.register(flaky, name="flaky", attempts=3)
    runtime = make_runtime(registry)
    deliver(runtime, ("evt_retrying", event_body("evt_retrying", record_id="rec_1")))
    for event_id in ("evt_dead", "evt_alive"):
        deliver(runtime, (event_id, event_body(event_id, record_id=f"rec_{event_id}")), run_follow_ups=False)
        assert runs.claim(engine, event_id, "flaky", lease_seconds=600) is not None  # a worker took it ...
    set_time(engine, "evt_dead", "lease_until", datetime.now(UTC) - timedelta(seconds=1))  # ... and evt_dead's died
    assert statuses(engine, "flaky") == {"evt_retrying": "retrying", "evt_dead": "running", "evt_alive": "running"}
    [dead] = failed.find(engine, Filter())
    assert (dead.event_id, dead.handler, dead.status, dead.last_error) == ("evt_dead", "flaky", "running", None)


def test_replay_runs_only_the_selected_failed_handlers_and_settles_their_events(make_runtime: MakeRuntime, engine: sqlalchemy.Engine) -> None:
    handlers = Handlers()
    runtime = make_runtime(handlers.registry())
    deliver_all(runtime)
    assert handlers.calls == {"a": 3, "b": 3, "fine": 3}
    assert {ledger_row(engine, e).status for e in EVENTS} == {"failed"}
    handlers.fixed = True
    outcomes = failed.replay(runtime, failed.find(engine, Filter(handler="a", entity_type="client")))
    assert outcomes == {"succeeded": 2}
    assert handlers.calls == {"a": 5, "b": 3, "fine": 3}  # neither "fine" nor "b" ran again
    assert statuses(engine, "a") == {"evt_1": "succeeded", "evt_2": "failed", "evt_3": "succeeded"}
    assert statuses(engine, "b") == dict.fromkeys(EVENTS, "failed")
    assert {ledger_row(engine, e).status for e in EVENTS} == {"failed"}  # "b" still failed on each
    assert failed.replay(runtime, failed.find(engine, Filter(event_ids=("evt_1",)))) == {"succeeded": 1}
    assert handlers.calls == {"a": 5, "b": 4, "fine": 3}
    entry = ledger_row(engine, "evt_1")
    assert entry.status == "processed" and entry.processed_at is not None
    assert run_row(engine, "evt_1", "b").attempts == 2 and run_row(engine, "evt_1", "mirror").attempts == 1
    assert pairs(failed.find(engine, Filter())) == {("evt_2", "a"), ("evt_2", "b"), ("evt_3", "b")}
    assert failed.replay(runtime, failed.find(engine, Filter(event_ids=("evt_1",)))) == Counter()  # nothing left to replay there


def test_a_replay_that_fails_again_stays_in_the_failed_list(make_runtime: MakeRuntime, engine: sqlalchemy.Engine) -> None:
    handlers = Handlers()
    runtime = make_runtime(handlers.registry())
    deliver_all(runtime)
    seen: list[tuple[str, str]] = []
    outcomes = failed.replay(runtime, failed.find(engine, Filter(event_ids=("evt_2",))), progress=lambda run: seen.append((run.event_id, run.handler)))
    assert outcomes == {"failed": 2}
    assert seen == [("evt_2", "a"), ("evt_2", "b")]
    assert handlers.calls == {"a": 4, "b": 4, "fine": 3}
    [run] = failed.find(engine, Filter(event_ids=("evt_2",), handler="a"))
    assert (run.status, run.attempts, run.last_error) == ("failed", 2, "DoNotRetry: a rejects evt_2")
    assert ledger_row(engine, "evt_2").status == "failed"


def test_replay_of_a_dead_workers_run_and_of_an_unknown_handler(make_runtime: MakeRuntime, engine: sqlalchemy.Engine) -> None:
    handlers = Handlers()
    handlers.fixed = True
    runtime = make_runtime(handlers.registry())
    deliver(runtime, ("evt_1", event_body("evt_1")), run_follow_ups=False)
    assert runs.claim(engine, "evt_1", "a", lease_seconds=600) is not None
    set_time(engine, "evt_1", "lease_until", datetime.now(UTC) - timedelta(seconds=1))
    [dead] = failed.find(engine, Filter())
    assert failed.replay(runtime, [dead]) == {"succeeded": 1}
    assert handlers.calls == {"a": 1}
    elsewhere = make_runtime(default_registry())  # a process that does not have the handler
    with Session(engine) as session, session.begin():
        session.execute(update(HandlerRun).where(HandlerRun.handler == "b").values(status="failed"))
    assert failed.replay(elsewhere, failed.find(engine, Filter(handler="b"))) == {"handler not registered here": 1}
    assert run_row(engine, "evt_1", "b").status == "failed"


def test_discard_takes_the_selected_runs_out_and_settles_their_events(make_runtime: MakeRuntime, engine: sqlalchemy.Engine) -> None:
    handlers = Handlers()
    runtime = make_runtime(handlers.registry())
    deliver_all(runtime)
    assert failed.discard(engine, failed.find(engine, Filter(event_ids=("evt_2",)))) == 2
    assert failed.discard(engine, failed.find(engine, Filter(event_ids=("evt_1",), handler="a"))) == 1
    assert (run_row(engine, "evt_2", "a").status, run_row(engine, "evt_2", "b").status) == ("discarded", "discarded")
    assert (run_row(engine, "evt_1", "a").status, run_row(engine, "evt_1", "b").status) == ("discarded", "failed")
    assert statuses(engine, "fine") == dict.fromkeys(EVENTS, "succeeded")  # untouched
    assert ledger_row(engine, "evt_2").status == "processed" and ledger_row(engine, "evt_2").processed_at is not None
    assert ledger_row(engine, "evt_1").status == "failed"  # "b" still failed there
    assert ledger_row(engine, "evt_3").status == "failed"
    assert pairs(failed.find(engine, Filter())) == {("evt_1", "b"), ("evt_3", "a"), ("evt_3", "b")}
    assert handlers.calls == {"a": 3, "b": 3, "fine": 3}  # discarding runs nothing


def test_discard_leaves_a_run_that_changed_since_it_was_listed(make_runtime: MakeRuntime, engine: sqlalchemy.Engine) -> None:
    handlers = Handlers()
    runtime = make_runtime(handlers.registry())
    deliver(runtime, ("evt_1", event_body("evt_1")))
    listed = failed.find(engine, Filter(handler="a"))
    handlers.fixed = True
    assert failed.replay(runtime, listed) == {"succeeded": 1}  # replayed meanwhile, by another operator
    assert failed.discard(engine, listed) == 0
    assert run_row(engine, "evt_1", "a").status == "succeeded"
