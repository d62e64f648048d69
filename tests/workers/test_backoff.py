"""The back-off between a custom handler's attempts: doubling from the retry delay, jittered, capped."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
import sqlalchemy
from sqlalchemy.orm import Session

from config import Settings
from tests.events import event_body
from tests.workers.conftest import MakeRuntime, deliver, run_row
from workers import processing
from workers.events import Event
from workers.processing import Policy, policy_for
from workers.registry import default_registry
from workers.runtime import start_runtime

SAMPLES = 300


def delays(policy: Policy, attempt: int) -> list[float]:
    return [policy.delay(attempt) for _ in range(SAMPLES)]


def test_each_delay_doubles_with_jitter_in_the_upper_half() -> None:
    random.seed(20261123)
    policy = Policy(timeout=30, attempts=10, retry_delay=10.0, max_delay=3600.0)
    previous_top = 0.0
    for attempt in range(1, 9):  # 10, 20, ... 1280 s: below the cap
        nominal = 10.0 * 2 ** (attempt - 1)
        drawn = delays(policy, attempt)
        assert all(nominal / 2 <= d <= nominal for d in drawn), attempt
        assert max(drawn) - min(drawn) > nominal / 4  # jittered: spread over the range, not one value
        assert min(drawn) >= previous_top  # every retry waits longer than any earlier one could
        previous_top = max(drawn)


def test_the_cap_bounds_every_delay() -> None:
    random.seed(7)
    policy = Policy(timeout=30, attempts=100, retry_delay=10.0, max_delay=300.0)
    for attempt in (6, 7, 10, 50, 100, 5000):  # 320 s and beyond: capped (5000: a handler's own attempts are not bounded)
        drawn = delays(policy, attempt)
        assert all(150.0 <= d <= 300.0 for d in drawn), attempt
        assert max(drawn) > 290.0  # the cap is reached, not merely respected


def test_a_handlers_retry_delay_overrides_the_setting(settings: Settings) -> None:
    registry = default_registry()
    own = registry.register(lambda event, session: None, name="own", retry_delay=2.0, attempts=7, timeout=4.0)
    zero = registry.register(lambda event, session: None, name="zero", retry_delay=0)
    inherits = registry.register(lambda event, session: None, name="inherits")
    runtime = start_runtime(replace(settings, handler_retry_delay=40.0, handler_retry_max_delay=500.0, handler_attempts=3, handler_timeout=9.0), registry)
    assert policy_for(runtime, own) == Policy(timeout=4.0, attempts=7, retry_delay=2.0, max_delay=500.0)
    assert policy_for(runtime, zero).retry_delay == 0  # "no wait" is a choice, not "unset"
    assert policy_for(runtime, inherits) == Policy(timeout=9.0, attempts=3, retry_delay=40.0, max_delay=500.0)
    assert all(1.0 <= policy_for(runtime, own).delay(1) <= 2.0 for _ in range(SAMPLES))
    assert all(20.0 <= policy_for(runtime, inherits).delay(1) <= 40.0 for _ in range(SAMPLES))


@pytest.mark.parametrize("attempt", [1, 3])
def test_a_failed_attempt_is_scheduled_after_the_handlers_delay(make_runtime: MakeRuntime, engine: sqlalchemy.Engine, attempt: int) -> None:
    def flaky(event: Event, session: Session) -> None:
        raise ConnectionError("down")

    registry = default_registry()
    registry.register(flaky, name="flaky", retry_delay=100.0, attempts=5)
    runtime = make_runtime(registry, handler_retry_max_delay=10_000.0)  # the setting's retry delay is 0.05 s
    deliver(runtime, ("evt_1", event_body("evt_1")))
    for _ in range(attempt - 1):
        processing.run_handler(runtime, "flaky", ["evt_1"], "retry")
    run = run_row(engine, "evt_1", "flaky")
    assert (run.status, run.attempts) == ("retrying", attempt)
    waited = (run.next_attempt_at - run.updated_at).total_seconds()
    nominal = 100.0 * 2 ** (attempt - 1)
    assert nominal / 2 - 1 <= waited <= nominal + 1  # the clock moves between the two timestamps
    [job_id] = runtime.handler_queue.scheduled_job_registry.get_job_ids()[-1:]
    assert runtime.handler_queue.fetch_job(job_id).args == ["flaky", ["evt_1"], "retry"]  # JSON: a list
