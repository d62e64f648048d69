"""The back-off between a custom handler's attempts: doubling from the retry delay, capped, jittered upwards only."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime

import pytest
import sqlalchemy
from sqlalchemy.orm import Session

from config import Settings
from tests.events import event_body
from tests.workers.conftest import MakeRuntime, deliver, run_row
from workers import handler_runs
from workers.events import Event
from workers.handler_runs import Policy, policy_for
from workers.registry import default_registry
from workers.runtime import start_runtime

SAMPLES = 300


def utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def delays(policy: Policy, attempt: int) -> list[float]:
    return [policy.delay(attempt) for _ in range(SAMPLES)]


def test_each_delay_doubles_with_jitter_of_up_to_a_quarter_more_never_less() -> None:
    random.seed(20261123)
    policy = Policy(timeout=30, attempts=10, retry_delay=10.0, max_delay=3600.0)
    previous_top = 0.0
    for attempt in range(1, 9):  # 10, 20, ... 1280 s: below the cap
        nominal = 10.0 * 2 ** (attempt - 1)
        drawn = delays(policy, attempt)
        assert all(nominal <= d <= nominal * 1.25 for d in drawn), attempt  # never earlier than documented
        assert max(drawn) - min(drawn) > nominal / 8  # jittered: spread over the range, not one value
        assert min(drawn) >= previous_top  # every retry waits longer than any earlier one could
        previous_top = max(drawn)


def test_the_cap_bounds_the_nominal_delay() -> None:
    random.seed(7)
    policy = Policy(timeout=30, attempts=100, retry_delay=10.0, max_delay=300.0)
    for attempt in (6, 7, 10, 50, 100, 5000):  # 320 s and beyond: capped (5000: a handler's own attempts are not bounded)
        drawn = delays(policy, attempt)
        assert all(300.0 <= d <= 375.0 for d in drawn), attempt
        assert max(drawn) > 365.0  # the jitter above the cap is used, not merely allowed


def test_a_handlers_retry_delay_overrides_the_setting(settings: Settings) -> None:
    registry = default_registry()
    own = registry.register(lambda event, session: None, name="own", retry_delay=2.0, attempts=7, timeout=4.0)
    zero = registry.register(lambda event, session: None, name="zero", retry_delay=0)
    inherits = registry.register(lambda event, session: None, name="inherits")
    runtime = start_runtime(replace(settings, handler_retry_delay=40.0, handler_retry_max_delay=500.0, handler_attempts=3, handler_timeout=9.0), registry)
    assert policy_for(runtime, own) == Policy(timeout=4.0, attempts=7, retry_delay=2.0, max_delay=500.0)
    assert policy_for(runtime, zero).retry_delay == 0  # "no wait" is a choice, not "unset"
    assert policy_for(runtime, inherits) == Policy(timeout=9.0, attempts=3, retry_delay=40.0, max_delay=500.0)
    assert all(2.0 <= policy_for(runtime, own).delay(1) <= 2.5 for _ in range(SAMPLES))
    assert all(40.0 <= policy_for(runtime, inherits).delay(1) <= 50.0 for _ in range(SAMPLES))


@pytest.mark.parametrize("attempt", [1, 3])
def test_a_failed_attempt_is_scheduled_after_the_handlers_delay(make_runtime: MakeRuntime, engine: sqlalchemy.Engine, attempt: int) -> None:
    def flaky(event: Event, session: Session) -> None:
        raise ConnectionError("down")

    registry = default_registry()
    registry.register(flaky, name="flaky", retry_delay=100.0, attempts=5)
    runtime = make_runtime(registry, handler_retry_max_delay=10_000.0)  # the setting's retry delay is 0.05 s
    deliver(runtime, ("evt_1", event_body("evt_1")))
    for _ in range(attempt - 1):
        handler_runs.run_handler(runtime, "flaky", ["evt_1"], "retry")
    run = run_row(engine, "evt_1", "flaky")
    assert (run.status, run.attempts) == ("retrying", attempt)
    waited = (run.next_attempt_at - run.updated_at).total_seconds()
    nominal = 100.0 * 2 ** (attempt - 1)
    assert nominal - 0.1 <= waited <= nominal * 1.25 + 1.1  # the clock moves between the two timestamps; rounded up
    scheduled = runtime.handler_queue.scheduled_job_registry
    [job_id] = scheduled.get_job_ids()[-1:]
    assert runtime.handler_queue.fetch_job(job_id).args == ["flaky", ["evt_1"], "retry"]  # JSON: a list
    # RQ's scheduler keeps whole seconds: the job's due time is the run's, rounded up, never down.
    due = scheduled.get_scheduled_time(job_id)
    assert utc(due) == utc(run.next_attempt_at) and utc(due).microsecond == 0


def test_a_retry_is_due_at_the_next_whole_second_never_before() -> None:
    moment = datetime(2026, 12, 1, 12, 0, 0, 250_000, tzinfo=UTC)
    assert handler_runs.retry_due(2.0, moment) == datetime(2026, 12, 1, 12, 0, 3, tzinfo=UTC)
    assert handler_runs.retry_due(1.75, moment) == datetime(2026, 12, 1, 12, 0, 2, tzinfo=UTC)  # exactly due: kept
    assert handler_runs.retry_due(0.001, moment) == datetime(2026, 12, 1, 12, 0, 1, tzinfo=UTC)


def test_retry_delay_zero_queues_the_retry_at_once(make_runtime: MakeRuntime, engine: sqlalchemy.Engine) -> None:
    def flaky(event: Event, session: Session) -> None:
        raise ConnectionError("down")

    registry = default_registry()
    registry.register(flaky, name="flaky", retry_delay=0, attempts=3)
    runtime = make_runtime(registry)
    deliver(runtime, ("evt_1", event_body("evt_1")))
    assert runtime.handler_queue.scheduled_job_registry.get_job_ids() == []  # not left to the scheduler's next second
    [job] = runtime.handler_queue.get_jobs()
    assert job.args[:3] == ["flaky", ["evt_1"], "retry"]
