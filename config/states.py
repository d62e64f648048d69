"""The states written in the tables and carried in job arguments, each spelled once.

StrEnums: stored and serialised as the plain strings they always were, so rows already
written and jobs already queued read the same. The workers write them; the receiver's status
page reads them.
"""

from __future__ import annotations

from enum import StrEnum


class LedgerStatus(StrEnum):
    """``aiwyn_events.status``: the sum of an event's handler runs."""

    PENDING = "pending"  # a handler is still to run, or retrying
    PROCESSED = "processed"  # every handler is done
    FAILED = "failed"  # a handler gave up: see ``python -m workers failed``
    INVALID = "invalid"  # the body is not a usable event; kept with its reason, never retried


class RunStatus(StrEnum):
    """``aiwyn_handler_runs.status``: where one handler's run on one event stands."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    RETRYING = "retrying"
    FAILED = "failed"
    SKIPPED = "skipped"
    DISCARDED = "discarded"


class ClaimMode(StrEnum):
    """Why a handler job runs, which decides the runs it may claim (a job argument)."""

    NEW = "new"  # a batch's follow-up job
    RETRY = "retry"  # the scheduled next attempt
    REPLAY = "replay"  # an operator's replay from the failed list


class RunOutcome(StrEnum):
    """What a handler job reports for an event when no run status was written by it."""

    HANDLER_NOT_HERE = "handler not here"  # this worker lacks the handler (a rolling deploy): left to one that has it
    NOT_CLAIMABLE = "not claimable"  # done, discarded, or running elsewhere
    LEASE_LOST = "lease lost"  # another worker took the run over: its result stands
    UNKNOWN = "unknown"  # no ledger row (hence no run row) for the event id


class StepAction(StrEnum):
    """What registration does to one subscription (``receiver.registration.plan``)."""

    CREATE = "create"
    UPDATE = "update"
    DEACTIVATE = "deactivate"
    UNCHANGED = "unchanged"
