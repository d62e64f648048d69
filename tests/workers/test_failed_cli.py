"""``python -m workers failed list|show|replay|discard`` through click's runner, on the test databases."""

from __future__ import annotations

import json
import logging
import sys
import types
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime

import pytest
import redis
import sqlalchemy
from click.testing import CliRunner, Result
from sqlalchemy import update
from sqlalchemy.orm import Session

from config import Settings
from config.settings import _FIELDS
from tests.events import event_body
from tests.workers.conftest import MakeRuntime, deliver, ledger_row, statuses
from workers import handler_runs
from workers.cli import cli
from workers.discovery import load_registry
from workers.events import Event
from workers.handlers import DoNotRetry, handler
from workers.models import HandlerRun
from workers.runtime import WorkerRuntime

MODULE = "failed_cli_handlers"


class State:
    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.fixed = False


@pytest.fixture
def state(monkeypatch: pytest.MonkeyPatch) -> State:
    """A handler module, as AIWYN_RECEIVER_HANDLER_MODULES names it: "broken" fails until fixed, "fine" always works."""
    state = State()
    module = types.ModuleType(MODULE)

    @handler(name="broken")
    def broken(event: Event, session: Session) -> None:
        state.calls["broken"] += 1
        if not state.fixed:
            raise DoNotRetry(f"the CRM rejects {event.id}")

    @handler(name="fine")
    def fine(event: Event, session: Session) -> None:
        state.calls["fine"] += 1

    for value in (broken, fine):
        value.__module__ = MODULE
        setattr(module, value.__name__, value)
    monkeypatch.setitem(sys.modules, MODULE, module)
    return state


@pytest.fixture
def env(database_url: str, redis_url: str, engine: sqlalchemy.Engine, redis_client: redis.Redis) -> Iterator[dict[str, str]]:
    """The CLI's environment: the test database and Redis, the handler module; every other setting unset."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    blank = dict.fromkeys(_FIELDS, "")  # an empty value counts as unset: nothing leaks from the shell running the tests
    yield blank | {"DATABASE_URL": database_url, "REDIS_URL": redis_url, "AIWYN_RECEIVER_HANDLER_MODULES": MODULE, "AIWYN_RECEIVER_LOG_LEVEL": "WARNING"}
    root.handlers[:], root.level = handlers, level  # the CLI's log handler writes to the runner's closed stream


@pytest.fixture
def runtime(state: State, settings: Settings, make_runtime: MakeRuntime) -> WorkerRuntime:
    """A worker with the module's handlers; three events delivered, "broken" failed on each."""
    runtime = make_runtime(load_registry(replace(settings, handler_modules=(MODULE,)), use_entry_points=False))
    for event_id, entity_type in (("evt_1", "client"), ("evt_2", "contact"), ("evt_3", "client")):
        deliver(runtime, (event_id, event_body(event_id, entity_type=entity_type, record_id=f"rec_{event_id}")))
    assert state.calls == {"broken": 3, "fine": 3}
    return runtime


def invoke(env: dict[str, str], *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, ["failed", *args], env=env, input=input)


def listed(result: Result) -> list[tuple[str, str]]:
    """(event id, handler) of each line of ``failed list``: time (two words), event, handler, type, attempts, error."""
    return [(line.split()[2], line.split()[3]) for line in result.stdout.splitlines()]


def test_list_prints_the_failed_runs_with_filters(runtime: WorkerRuntime, env: dict[str, str], engine: sqlalchemy.Engine) -> None:
    everything = invoke(env, "list")
    assert everything.exit_code == 0, everything.output
    assert listed(everything) == [("evt_1", "broken"), ("evt_2", "broken"), ("evt_3", "broken")]
    assert "client" in everything.stdout.splitlines()[0] and "x1  DoNotRetry: the CRM rejects evt_1" in everything.stdout
    assert everything.stderr.strip() == "3 failed run(s)"
    assert listed(invoke(env, "list", "--type", "contact")) == [("evt_2", "broken")]
    assert listed(invoke(env, "list", "--handler", "fine")) == []
    limited = invoke(env, "list", "--limit", "2")
    assert listed(limited) == [("evt_1", "broken"), ("evt_2", "broken")] and "(limit reached)" in limited.stderr
    with Session(engine) as session, session.begin():
        for day, event_id in ((1, "evt_1"), (2, "evt_2"), (3, "evt_3")):
            moment = datetime(2026, 3, day, 12, 0, tzinfo=UTC)
            value = moment.replace(tzinfo=None) if engine.dialect.name == "sqlite" else moment
            session.execute(update(HandlerRun).where(HandlerRun.event_id == event_id).values(updated_at=value))
    dated = invoke(env, "list", "--since", "2026-03-02", "--until", "2026-03-03T12:00:00")
    assert listed(dated) == [("evt_2", "broken")]
    assert dated.stdout.startswith("2026-03-02 12:00:00  evt_2")
    assert listed(invoke(env, "list", "--since", "2026-03-02 12:00:01")) == [("evt_3", "broken")]


def test_show_prints_the_error_and_the_payload(runtime: WorkerRuntime, env: dict[str, str]) -> None:
    shown = invoke(env, "show", "evt_2")
    assert shown.exit_code == 0, shown.output
    assert "event:    evt_2 (contact UPDATE rec_evt_2)" in shown.stdout
    assert "handler:  broken  status: failed  attempts: 1" in shown.stdout
    assert "error:    DoNotRetry: the CRM rejects evt_2" in shown.stdout
    assert '"entityType": "contact"' in shown.stdout and '"id": "rec_evt_2"' in shown.stdout
    missing = invoke(env, "show", "evt_2", "--handler", "fine")
    assert missing.exit_code == 1 and "no failed run for event evt_2 and handler fine" in missing.output


def test_replay_without_a_selection_refuses(runtime: WorkerRuntime, env: dict[str, str], state: State, engine: sqlalchemy.Engine) -> None:
    state.fixed = True
    refused = invoke(env, "replay")
    assert refused.exit_code == 2
    assert "name event ids, give a filter, or say --all" in refused.output
    assert state.calls == {"broken": 3, "fine": 3}
    assert statuses(engine, "broken") == dict.fromkeys(("evt_1", "evt_2", "evt_3"), "failed")


def test_replay_runs_the_selected_failed_handlers(runtime: WorkerRuntime, env: dict[str, str], state: State, engine: sqlalchemy.Engine) -> None:
    state.fixed = True
    replayed = invoke(env, "replay", "evt_1", "evt_3")
    assert replayed.exit_code == 0, replayed.output
    assert replayed.stdout.strip() == "2 succeeded"
    assert state.calls == {"broken": 5, "fine": 3}  # "fine" succeeded before: not run again
    assert statuses(engine, "broken") == {"evt_1": "succeeded", "evt_2": "failed", "evt_3": "succeeded"}
    assert ledger_row(engine, "evt_1").status == "processed" and ledger_row(engine, "evt_2").status == "failed"
    assert invoke(env, "replay", "evt_1").stdout.strip() == "nothing to replay"
    rest = invoke(env, "replay", "--all")
    assert (rest.exit_code, rest.stdout.strip()) == (0, "1 succeeded")
    assert ledger_row(engine, "evt_2").status == "processed"


def test_replay_exits_1_when_a_run_still_fails(runtime: WorkerRuntime, env: dict[str, str], state: State, engine: sqlalchemy.Engine) -> None:
    replayed = invoke(env, "replay", "--type", "contact")
    assert replayed.exit_code == 1
    assert replayed.stdout.strip() == "1 failed"
    assert state.calls == {"broken": 4, "fine": 3}
    assert listed(invoke(env, "list")) == [("evt_1", "broken"), ("evt_3", "broken"), ("evt_2", "broken")]  # evt_2 failed last


def test_discard_asks_first_and_refuses_without_a_selection(runtime: WorkerRuntime, env: dict[str, str], engine: sqlalchemy.Engine) -> None:
    refused = invoke(env, "discard", "--yes")
    assert refused.exit_code == 2 and "name event ids, give a filter, or say --all" in refused.output
    declined = invoke(env, "discard", "--all", input="n\n")
    assert declined.exit_code == 1 and "discard 3 failed run(s)?" in declined.output and "Aborted" in declined.output
    no_answer = invoke(env, "discard", "--all")  # no terminal to answer: the prompt reads end of input
    assert no_answer.exit_code == 1
    assert statuses(engine, "broken") == dict.fromkeys(("evt_1", "evt_2", "evt_3"), "failed")
    accepted = invoke(env, "discard", "evt_1", input="y\n")
    assert accepted.exit_code == 0 and "discarded 1 run(s)" in accepted.stdout
    forced = invoke(env, "discard", "--type", "contact", "--yes")
    assert forced.exit_code == 0 and "?" not in forced.output and "discarded 1 run(s)" in forced.stdout
    assert statuses(engine, "broken") == {"evt_1": "discarded", "evt_2": "discarded", "evt_3": "failed"}
    assert [ledger_row(engine, e).status for e in ("evt_1", "evt_2", "evt_3")] == ["processed", "processed", "failed"]


def test_list_and_show_print_utc_whatever_the_database_session_zone(runtime: WorkerRuntime, env: dict[str, str], engine: sqlalchemy.Engine) -> None:
    """--since and --until are UTC, so the times printed must be too, not the PostgreSQL server's TimeZone."""
    moment = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    with Session(engine) as session, session.begin():
        value = moment.replace(tzinfo=None) if engine.dialect.name == "sqlite" else moment
        session.execute(update(HandlerRun).where(HandlerRun.event_id == "evt_2").values(updated_at=value))
    elsewhere = env | {"PGTZ": "America/New_York"}  # libpq's session zone, as a server's own TimeZone setting would be
    dated = invoke(elsewhere, "list", "--since", "2026-03-02T12:00:00", "--until", "2026-03-02T12:00:01")
    assert dated.stdout.startswith("2026-03-02 12:00:00  evt_2"), dated.output
    assert "last: 2026-03-02 12:00:00" in invoke(elsewhere, "show", "evt_2").stdout


def test_list_json_and_show_give_the_full_error_and_traceback(runtime: WorkerRuntime, env: dict[str, str], engine: sqlalchemy.Engine) -> None:
    long_error = "DoNotRetry: " + "x" * 300
    with Session(engine) as session, session.begin():
        session.execute(update(HandlerRun).where(HandlerRun.event_id == "evt_3").values(last_error=long_error))
    lines = invoke(env, "list", "--json").stdout.splitlines()
    rows = [json.loads(line) for line in lines]
    assert [(r["event_id"], r["handler"], r["entity_type"], r["attempts"]) for r in rows] == [
        ("evt_1", "broken", "client", 1), ("evt_2", "broken", "contact", 1), ("evt_3", "broken", "client", 1),
    ]  # fmt: skip
    assert rows[0]["error"] == "DoNotRetry: the CRM rejects evt_1"
    assert rows[0]["traceback"].startswith("Traceback (most recent call last):") and "in broken" in rows[0]["traceback"]
    assert rows[2]["error"] == long_error and rows[2]["traceback"] is None
    assert long_error in invoke(env, "list").stdout  # the text list no longer cuts the error
    shown = invoke(env, "show", "evt_1").stdout
    assert "Traceback (most recent call last):" in shown and f'File "{__file__}"' in shown and "in broken" in shown


def test_replay_enqueue_hands_the_replays_to_the_workers(runtime: WorkerRuntime, env: dict[str, str], state: State, engine: sqlalchemy.Engine) -> None:
    state.fixed = True
    here = env | {"AIWYN_RECEIVER_HANDLER_MODULES": ""}  # the command needs no handler code when it only queues
    queued = invoke(here, "replay", "--all", "--enqueue")
    assert queued.exit_code == 0, queued.output
    assert "queued 3 replay(s) in 1 job(s)" in queued.stdout
    assert state.calls == {"broken": 3, "fine": 3}  # nothing ran in the command
    [job] = runtime.handler_queue.get_jobs()
    assert job.args[:3] == ["broken", ["evt_1", "evt_2", "evt_3"], "replay"]  # JSON jobs: a list
    handler_runs.run_handler(runtime, *job.args)  # what the worker that takes the job does
    assert statuses(engine, "broken") == dict.fromkeys(("evt_1", "evt_2", "evt_3"), "succeeded")
