"""The session a handler is given: the worker's transaction, which the handler must not commit."""

from __future__ import annotations

from typing import NoReturn

from sqlalchemy.orm import Session

from workers.handlers import CommitRefused


class HandlerSession(Session):
    """Refuses ``commit()``: a handler's writes commit once, with its run's ``succeeded`` mark.

    The worker commits through the transaction ``session.begin()`` returned, never through
    ``Session.commit``; savepoints (``session.begin_nested()``) work as usual.
    """

    def commit(self) -> NoReturn:
        raise CommitRefused(
            "a handler must not call session.commit(): the worker commits its writes together with the run"
            " (use session.flush() to send them early, session.begin_nested() for a savepoint)"
        )
