"""The worker's sweep for handler runs left without a job: retrying, running past the lease, pending."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy
from sqlalchemy import update
from sqlalchemy.orm import Session

from tests.events import event_body
from tests.workers.conftest import MakeRuntime, deliver, ledger_row, run_row, statuses
from workers import database, handler_runs, runs
from workers.events import Event
from workers.models import HandlerRun
from workers.recovery import requeue_stuck_runs
from workers.registry import HandlerRegistry, default_registry
from workers.worker import DrainWorker


def age(engine: sqlalchemy.Engine, event_id: str, seconds: float, column: str) -> None:
    """Move a run's timestamp into the past, as if its job had been lost that long ago."""
    past = database.now_for(engine) - timedelta(seconds=seconds)
    with Session(engine) as session, session.begin():
        session.execute(update(HandlerRun).where(HandlerRun.event_id == event_id, HandlerRun.handler == "counted").values({column: past}))


def counting_registry(calls: list[str]) -> HandlerRegistry:
    failing = ["evt_retrying"]  # its first attempt fails

    def counted(event: Event, session: Session) -> None:
        calls.append(event.id)
        if event.id in failing:
            failing.remove(event.id)
            raise ConnectionError("not yet")

    registry = default_registry()
    registry.register(counted, name="counted", attempts=3)
    return registry


def test_runs_whose_jobs_were_lost_are_queued_again_once_and_then_run(make_runtime: MakeRuntime, engine: sqlalchemy.Engine) -> None:
    calls: list[str] = []
    runtime = make_runtime(counting_registry(calls))
    deliver(runtime, ("evt_retrying", event_body("evt_retrying", record_id="rec_1")))  # fails once: retrying
    scheduled = runtime.handler_queue.scheduled_job_registry
    scheduled.remove(scheduled.get_job_ids()[0], delete_job=True)
    age(engine, "evt_retrying", 120, "next_attempt_at")
    deliver(runtime, ("evt_pending", event_body("evt_pending", record_id="rec_2")), run_follow_ups=False)  # follow-up never queued
    age(engine, "evt_pending", 120, "updated_at")
    deliver(runtime, ("evt_running", event_body("evt_running", record_id="rec_3")), run_follow_ups=False)
    assert runs.claim(engine, "evt_running", "counted", lease_seconds=60) is not None  # then the worker died
    age(engine, "evt_running", 1, "lease_until")
    deliver(runtime, ("evt_fresh", event_body("evt_fresh", record_id="rec_4")), run_follow_ups=False)  # its job is just queued
    assert statuses(engine, "counted") == {"evt_retrying": "retrying", "evt_pending": "pending", "evt_running": "running", "evt_fresh": "pending"}

    assert requeue_stuck_runs(runtime) == 3
    assert requeue_stuck_runs(runtime) == 0  # claimed: a second worker's sweep queues nothing more
    assert sorted((job.args[0], tuple(job.args[1]), job.args[2]) for job in runtime.handler_queue.jobs) == [
        ("counted", ("evt_pending",), "new"),
        ("counted", ("evt_retrying", "evt_running"), "retry"),
    ]
    runtime.handler_queue.empty()  # lost again
    calls.clear()
    age(engine, "evt_retrying", 120, "next_attempt_at")
    age(engine, "evt_running", 120, "next_attempt_at")
    age(engine, "evt_pending", 120, "updated_at")
    DrainWorker([runtime.handler_queue], connection=runtime.redis, runtime=runtime).work(burst=True)  # its heartbeat sweeps
    assert sorted(calls) == ["evt_pending", "evt_retrying", "evt_running"]
    assert statuses(engine, "counted") == {"evt_retrying": "succeeded", "evt_pending": "succeeded", "evt_running": "succeeded", "evt_fresh": "pending"}
    assert ledger_row(engine, "evt_running").status == "processed"


def test_a_run_whose_worker_died_on_its_last_attempt_goes_to_the_failed_list(make_runtime: MakeRuntime, engine: sqlalchemy.Engine) -> None:
    runtime = make_runtime(counting_registry([]))
    deliver(runtime, ("evt_1", event_body("evt_1")), run_follow_ups=False)
    with Session(engine) as session, session.begin():
        session.execute(update(HandlerRun).where(HandlerRun.handler == "counted").values(attempts=2))
    assert runs.claim(engine, "evt_1", "counted", lease_seconds=60) is not None  # attempt 3 of 3, then the worker died
    age(engine, "evt_1", 1, "lease_until")
    assert requeue_stuck_runs(runtime) == 1
    run = run_row(engine, "evt_1", "counted")
    assert (run.status, run.attempts) == ("failed", 3) and "worker died" in run.last_error
    assert ledger_row(engine, "evt_1").status == "failed"
    assert runtime.handler_queue.count == 0
    assert handler_runs.load_deliveries(runtime, ["evt_1"])  # still replayable
