"""Handlers the end-to-end test deploys through AIWYN_RECEIVER_HANDLER_MODULES.

They keep their state in files under ``AIWYN_E2E_STATE`` (they run in the worker process and
in the replay command's process): ``<handler>.attempts`` and ``<handler>.done`` list event ids.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from sqlalchemy.orm import Session

from workers.handlers import Event, handler


def _note(kind: str, event: Event) -> int:
    path = Path(os.environ["AIWYN_E2E_STATE"]) / kind
    with path.open("a") as file:
        file.write(event.id + "\n")
    return path.read_text().split().count(event.id)


@handler("client", name="flaky")
def flaky(event: Event, session: Session) -> None:
    """Fails its first two attempts on every event."""
    if _note("flaky.attempts", event) <= 2:
        raise ConnectionError("the CRM is not answering yet")
    _note("flaky.done", event)


@handler("client", name="broken")
def broken(event: Event, session: Session) -> None:
    """Fails until the operator fixes it (the setting AIWYN_E2E_FIXED)."""
    _note("broken.attempts", event)
    if os.environ.get("AIWYN_E2E_FIXED") != "1":
        raise RuntimeError("the CRM rejects the payload")
    _note("broken.done", event)


@handler("staff", name="hangs", timeout=1, attempts=2)
def hangs(event: Event, session: Session) -> None:
    """Hangs on every staff change; the worker must stop it and carry on."""
    _note("hangs.attempts", event)
    time.sleep(600)
