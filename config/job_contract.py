"""The one agreement between the receiver and the workers: which job, with which arguments.

The receiver enqueues ``PROCESS_DELIVERY`` by its dotted name (it never imports the workers)
with the positional arguments ``(event_id: str, subscription_id: str, body: bytes)``: the
verified ``webhook-id``, the ``aiwyn-subscription-id`` header and the raw body as received.
The worker parses the body itself, so what is queued is exactly what was signed.
"""

from __future__ import annotations

import hashlib
import re

PROCESS_DELIVERY = "workers.jobs.process_delivery"

_RQ_SAFE_ID = re.compile(r"[A-Za-z0-9_-]{1,100}")


def job_id_for(event_id: str) -> str:
    """The RQ job id of an event: one job per event id, which is what makes enqueueing idempotent."""
    if _RQ_SAFE_ID.fullmatch(event_id):
        return f"aiwyn-{event_id}"
    # RQ accepts only letters, digits, '_' and '-'; any other id still gets one stable job id.
    return "aiwyn-sha256-" + hashlib.sha256(event_id.encode("utf-8")).hexdigest()
