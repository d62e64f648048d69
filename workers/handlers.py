"""The API for writing a handler: ``@handler(...)``, its options, and the errors that steer retries.

    from workers import DoNotRetry, Retry, handler

    @handler("client", ["CREATE", "UPDATE"], timeout=10, retry_on=(ConnectionError,))
    def notify_crm(event, session):
        ...

The decorator only labels the function (or class); the worker registers every labelled
object of each module named by ``AIWYN_RECEIVER_HANDLER_MODULES`` or by the entry point
group ``aiwyn_receiver.handlers``. So the decorated function stays a plain function that a
test can call directly.

Errors a handler may raise, beside its own::

    Exception
     ├── DoNotRetry             straight to the failed list
     │    └── CommitRefused     session.commit() in a handler (the worker commits)
     ├── Retry(after=seconds)   retry after exactly that long (e.g. a Retry-After header)
     └── HandlerTimeout         raised in the handler by the worker at its timeout
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from workers.events import Event, Record
from workers.timeouts import HandlerTimeout

__all__ = [
    "ANY", "CommitRefused", "DoNotRetry", "Event", "Failure", "HandlerOptions", "HandlerSpec", "HandlerTimeout", "Record", "Retry",
    "handler",
]  # fmt: skip

ANY = "*"
SPEC_ATTRIBUTE = "__aiwyn_handler__"
T = TypeVar("T")


class DoNotRetry(Exception):
    """Raised by a handler when retrying cannot help: the run goes to the failed list at once."""


class CommitRefused(DoNotRetry):
    """A handler called ``session.commit()``: the worker commits its writes together with its run."""


class Retry(Exception):
    """Raised by a handler to be retried after ``after`` seconds (no jitter, not doubled); still one attempt."""

    def __init__(self, after: float, reason: str = "") -> None:
        if not after >= 0:
            raise ValueError("Retry(after=...) takes seconds, zero or more")
        super().__init__(reason or f"retry asked for in {after:g} s")
        self.after = float(after)


@dataclass(frozen=True)
class Failure:
    """What a give-up hook is given: the run that failed for good, and why."""

    handler: str
    event_id: str
    event: Event | None  # None when the stored payload no longer parses
    error: str  # "Type: message"
    traceback: str | None
    attempts: int  # of this set (a replay starts a fresh one)
    exception: BaseException | None = None


GiveUpHook = Callable[[Failure], Any]


@dataclass(frozen=True)
class HandlerOptions:
    """A handler's run policy; ``None`` takes the worker's setting (``AIWYN_RECEIVER_HANDLER_*``).

    ``retry_on``: only these exceptions are retried (empty: every exception); ``no_retry_on``:
    these never are, and win over ``retry_on``. ``DoNotRetry`` never is, ``Retry`` always is
    (until the last attempt). ``on_give_up(failure)`` is called once a run goes to the failed list.
    """

    timeout: float | None = None
    attempts: int | None = None
    retry_delay: float | None = None
    ordered: bool = False
    retry_on: tuple[type[BaseException], ...] = ()
    no_retry_on: tuple[type[BaseException], ...] = ()
    on_give_up: GiveUpHook | None = None

    def retries(self, exc: BaseException) -> bool:
        """Whether this error is worth another attempt (attempts left aside)."""
        if isinstance(exc, DoNotRetry) or isinstance(exc, self.no_retry_on):
            return False
        return isinstance(exc, Retry) or not self.retry_on or isinstance(exc, self.retry_on)


@dataclass(frozen=True)
class HandlerSpec:
    entity_types: str | tuple[str, ...]
    operations: str | tuple[str, ...]
    name: str | None
    options: HandlerOptions


def handler(
    entity_types: str | Iterable[str] = ANY,
    operations: str | Iterable[str] = ANY,
    *,
    name: str | None = None,
    timeout: float | None = None,
    attempts: int | None = None,
    retry_delay: float | None = None,
    ordered: bool = False,
    retry_on: Iterable[type[BaseException]] = (),
    no_retry_on: Iterable[type[BaseException]] = (),
    on_give_up: GiveUpHook | None = None,
) -> Any:
    """Label a function ``f(event, session)`` or a class with ``handle(event, session)`` as a handler.

    ``name`` is the handler's key in the ledger: the default, ``module.qualname``, changes when
    the function is renamed or moved, which orphans its runs. ``timeout`` (seconds), ``attempts``
    and ``retry_delay`` (first back-off, seconds) override the worker's settings. ``ordered=True``
    makes the handler see the changes of one record only in increasing order. See
    ``HandlerOptions`` for ``retry_on``, ``no_retry_on`` and ``on_give_up``.
    """
    options = HandlerOptions(timeout, attempts, retry_delay, ordered, tuple(retry_on), tuple(no_retry_on), on_give_up)

    def label(target: T) -> T:
        types = entity_types if isinstance(entity_types, str) else tuple(entity_types)
        setattr(target, SPEC_ATTRIBUTE, HandlerSpec(types, operations if isinstance(operations, str) else tuple(operations), name, options))
        return target

    return label
