"""The handler author's API through ``workers``: tracebacks, attempts, replays, what to retry and
when, give-up hooks, the event as JSON and as received, and a session that refuses commit()."""

from __future__ import annotations

import json
import logging
import sys
import types
from dataclasses import replace
from datetime import UTC, datetime

import pytest
import sqlalchemy
from sqlalchemy import text
from sqlalchemy.orm import Session

from config import Settings
from tests.events import event_body
from tests.workers.conftest import MakeRuntime, deliver, ledger_row, run_row
from workers import (
    CommitRefused,
    DoNotRetry,
    Event,
    Failure,
    HandlerRegistry,
    Retry,
    call_handler,
    failed,
    handler,
    handler_runs,
    make_event,
)
from workers.discovery import HandlerLoadError, load_registry, warn_unknown_entity_types
from workers.registry import default_registry


def registry_of(*functions: object) -> HandlerRegistry:
    """A worker's registry of these @handler functions, as discovery registers them."""
    module = types.ModuleType("api_handlers")
    for function in functions:
        function.__module__ = module.__name__
        setattr(module, function.__name__, function)
    sys.modules[module.__name__] = module
    try:
        return load_registry(Settings(handler_modules=(module.__name__,)), use_entry_points=False)
    finally:
        del sys.modules[module.__name__]


def utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def look_up_email(attributes: dict) -> str:
    return attributes["email"]  # the line the traceback must point at


def test_a_failure_keeps_its_traceback_with_file_and_line(make_runtime: MakeRuntime) -> None:
    @handler(name="crm", attempts=1)
    def crm(event: Event, session: Session) -> None:
        look_up_email(event.record.as_dict()["attributes"])

    @handler(name="deep", attempts=1)
    def deep(event: Event, session: Session, depth: int = 0) -> None:
        if depth < 300:
            deep(event, session, depth + 1)
        raise ValueError("at the bottom")

    runtime = make_runtime(registry_of(crm, deep))
    deliver(runtime, ("evt_1", event_body("evt_1")))
    runs = {run.handler: run for run in failed.find(runtime.engine, failed.Filter())}
    assert runs["crm"].last_error == "KeyError: 'email'"
    assert runs["crm"].traceback.startswith("Traceback (most recent call last):")
    assert f'File "{__file__}", line' in runs["crm"].traceback and "in look_up_email" in runs["crm"].traceback
    assert runs["crm"].traceback.rstrip().endswith("KeyError: 'email'")
    # Bounded: the innermost frames and the error are kept, the outer ones cut.
    assert len(runs["deep"].traceback) <= 8100 and runs["deep"].traceback.rstrip().endswith("ValueError: at the bottom")


def test_the_handler_sees_its_attempt_and_whether_it_is_a_replay(make_runtime: MakeRuntime, engine: sqlalchemy.Engine) -> None:
    seen: list[tuple[int, bool]] = []
    fixed = []

    @handler(name="counts", attempts=2)
    def counts(event: Event, session: Session) -> None:
        seen.append((event.attempt, event.replay))
        if not fixed:
            raise ConnectionError("down")

    runtime = make_runtime(registry_of(counts))
    deliver(runtime, ("evt_1", event_body("evt_1")))
    handler_runs.run_handler(runtime, "counts", ["evt_1"], "retry")
    assert seen == [(1, False), (2, False)] and run_row(engine, "evt_1", "counts").status == "failed"
    handler_runs.run_handler(runtime, "counts", ["evt_1"], "replay")  # the operator's replay, still broken
    handler_runs.run_handler(runtime, "counts", ["evt_1"], "retry")
    fixed.append(True)
    assert seen[2:] == [(1, True), (2, True)]  # a fresh set of attempts, all of the replay
    assert failed.replay(runtime, failed.find(engine, failed.Filter())) == {"succeeded": 1}
    assert seen[4:] == [(1, True)]


def test_retry_on_and_no_retry_on_choose_what_is_retried(make_runtime: MakeRuntime, engine: sqlalchemy.Engine) -> None:
    errors = {"evt_1": ConnectionError("the CRM is down"), "evt_2": KeyError("email"), "evt_3": TimeoutError("slow")}

    @handler(name="picky", attempts=5, retry_on=(ConnectionError, TimeoutError), no_retry_on=(TimeoutError,))
    def picky(event: Event, session: Session) -> None:
        raise errors[event.id]

    runtime = make_runtime(registry_of(picky))
    for event_id in errors:
        deliver(runtime, (event_id, event_body(event_id)))
    assert run_row(engine, "evt_1", "picky").status == "retrying"  # listed in retry_on
    assert run_row(engine, "evt_2", "picky").status == "failed"  # a programming error: failed at once, one attempt used
    assert run_row(engine, "evt_3", "picky").status == "failed"  # no_retry_on wins over retry_on
    assert ledger_row(engine, "evt_2").status == "failed"


def test_retry_after_schedules_the_asked_delay_exactly_rounded_up_to_a_second(make_runtime: MakeRuntime, engine: sqlalchemy.Engine) -> None:
    @handler(name="polite", attempts=3, retry_on=(KeyError,))
    def polite(event: Event, session: Session) -> None:
        raise Retry(after=120, reason="the CRM said Retry-After: 120")

    runtime = make_runtime(registry_of(polite))
    before = datetime.now(UTC)
    deliver(runtime, ("evt_1", event_body("evt_1")))
    run = run_row(engine, "evt_1", "polite")
    assert run.status == "retrying" and run.last_error.startswith("Retry: the CRM said Retry-After: 120")
    due = utc(run.next_attempt_at)
    assert 120 <= (due - before).total_seconds() <= 122 and due.microsecond == 0  # no jitter, never early
    scheduled = runtime.handler_queue.scheduled_job_registry
    [job_id] = scheduled.get_job_ids()
    assert utc(scheduled.get_scheduled_time(job_id)) == due
    with pytest.raises(ValueError, match="seconds"):
        Retry(after=-1)


def test_give_up_hooks_of_the_handler_and_the_setting(make_runtime: MakeRuntime, settings: Settings, engine: sqlalchemy.Engine, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    paged: list[tuple[str, Failure]] = []
    hooks = types.ModuleType("ops_hooks")
    hooks.page = lambda failure: paged.append(("global", failure))
    hooks.broken = lambda failure: 1 / 0
    monkeypatch.setitem(sys.modules, "ops_hooks", hooks)

    @handler(name="gives-up", attempts=2, on_give_up=lambda failure: paged.append(("own", failure)))
    def gives_up(event: Event, session: Session) -> None:
        raise RuntimeError(f"rejected {event.id}")

    @handler(name="hook-raises", on_give_up=hooks.broken)
    def hook_raises(event: Event, session: Session) -> None:
        raise DoNotRetry("bad data")

    registry = registry_of(gives_up, hook_raises)
    registry.on_give_up = load_registry(replace(settings, on_give_up="ops_hooks:page"), use_entry_points=False).on_give_up
    runtime = make_runtime(registry)
    deliver(runtime, ("evt_1", event_body("evt_1")))
    assert [(who, f.handler) for who, f in paged] == [("global", "hook-raises")]  # a retry is not giving up
    handler_runs.run_handler(runtime, "gives-up", ["evt_1"], "retry")
    own = [f for who, f in paged if who == "own"]
    assert [f.handler for who, f in paged if who == "global"] == ["hook-raises", "gives-up"]
    [failure] = own
    assert (failure.handler, failure.event_id, failure.event.id, failure.attempts) == ("gives-up", "evt_1", "evt_1", 2)
    assert failure.error == "RuntimeError: rejected evt_1" and "in gives_up" in failure.traceback
    assert isinstance(failure.exception, RuntimeError)
    # The hook that raised is logged and changes nothing.
    assert run_row(engine, "evt_1", "hook-raises").status == "failed"
    assert "the give-up hook" in caplog.text and "ZeroDivisionError" in caplog.text
    with pytest.raises(HandlerLoadError, match="AIWYN_RECEIVER_ON_GIVE_UP=ops_hooks:missing"):
        load_registry(replace(settings, on_give_up="ops_hooks:missing"), use_entry_points=False)


def test_the_event_as_json_and_its_raw_body(make_runtime: MakeRuntime) -> None:
    seen: list[Event] = []

    @handler(name="keeps")
    def keeps(event: Event, session: Session) -> None:
        seen.append(event)

    body = event_body("evt_1", attributes={"tags": ["a", "b"], "address": {"city": "Leeds"}}).replace(b'{"', b'{ "', 1)
    deliver(make_runtime(registry_of(keeps)), ("evt_1", body))
    [event] = seen
    assert event.raw == body  # byte for byte, spacing included
    as_json = json.loads(json.dumps(event.as_dict()))
    assert as_json["record"]["attributes"] == {"tags": ["a", "b"], "address": {"city": "Leeds"}}
    assert as_json["id"] == "evt_1" and as_json["attempt"] == 1 and as_json["replay"] is False
    assert datetime.fromisoformat(as_json["occurred_at"]) == event.occurred_at
    made = make_event("client", attributes={"n": 1}, attempt=3, replay=True)
    assert (made.attempt, made.replay) == (3, True) and json.loads(made.raw)["record"]["attributes"] == {"n": 1}


def test_session_commit_is_refused_and_fails_the_run_at_once(make_runtime: MakeRuntime, engine: sqlalchemy.Engine) -> None:
    @handler(name="commits", attempts=5)
    def commits(event: Event, session: Session) -> None:
        session.execute(text("UPDATE aiwyn_records SET attributes = '{\"x\": 1}'"))
        session.commit()

    @handler(name="savepoints", attempts=5)
    def savepoints(event: Event, session: Session) -> None:
        with session.begin_nested():
            session.execute(text("UPDATE aiwyn_records SET version = 99"))

    runtime = make_runtime(registry_of(commits, savepoints))
    deliver(runtime, ("evt_1", event_body("evt_1", version=1)))
    run = run_row(engine, "evt_1", "commits")
    assert (run.status, run.attempts) == ("failed", 1)
    assert run.last_error.startswith("CommitRefused: a handler must not call session.commit()")
    assert run_row(engine, "evt_1", "savepoints").status == "succeeded"
    with Session(engine) as session:
        assert session.execute(text("SELECT attributes, version FROM aiwyn_records")).one()[1] == 99
        assert "x" not in str(session.execute(text("SELECT attributes FROM aiwyn_records")).scalar_one())
    assert issubclass(CommitRefused, DoNotRetry)


def test_a_warning_names_a_handler_whose_entity_types_nobody_knows(caplog: pytest.LogCaptureFixture) -> None:
    @handler(["client", "clinet"], name="typo")
    def typo(event: Event, session: Session) -> None: ...

    @handler("invoice", name="catalogued")
    def catalogued(event: Event, session: Session) -> None: ...

    registry = registry_of(typo, catalogued)
    with caplog.at_level(logging.WARNING):
        assert warn_unknown_entity_types(registry, ["client"], lambda: ["client", "invoice", "staff"]) == {"typo": ["clinet"]}
    assert "handler typo is registered for entity type(s) clinet" in caplog.text
    asked: list[bool] = []
    assert warn_unknown_entity_types(registry, ["client", "clinet", "invoice"], lambda: asked.append(True) or []) == {}
    assert asked == []  # Aiwyn is asked only when the subscriptions do not settle it


def test_the_readme_names_the_default_handler_name_and_call_handler_passes_the_event(engine: sqlalchemy.Engine) -> None:
    @handler("client")
    def unnamed(event: Event, session: Session) -> None:
        return event.attempt

    registry = default_registry()
    registry.register(unnamed, name=None)
    assert registry.get(f"{__name__}.test_the_readme_names_the_default_handler_name_and_call_handler_passes_the_event.<locals>.unnamed")
    with Session(engine) as session:
        assert call_handler(unnamed, make_event(attempt=2), session) == 2
