"""Where the counts behind ``/metrics`` live in Redis: the keys and buckets the receiver and the workers share.

Every counter is a Redis hash that any process adds to (the endpoint inside the script that
stores a delivery, the workers once per committed batch), and every web process reads at
scrape time: the figures are the same whichever process, or machine, counted them and
whichever answers the scrape. Counter fields are JSON arrays of the label values. A histogram
is a hash of per-bucket counts (field ``str(i)``: the count of values in bucket ``i``, whose
upper bound is ``buckets[i]``; ``str(len(buckets))`` is +Inf) and ``sum_us``, the sum in
microseconds (HINCRBY stays integer, hence exact).
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Sequence

# Seconds: the endpoint answers in milliseconds; a mirror lag is seconds, or hours after an outage.
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 21600.0, 86400.0)
SUM_FIELD = "sum_us"
# Per-minute lag and per-hour event counts, for the status page's "last hour" and "last 24 h".
LAG_MINUTE_TTL = 2 * 3600
EVENTS_HOUR_TTL = 26 * 3600

SECRET_FETCHES_KEY = "aiwyn:metrics:secret-fetches"  # hash outcome -> count (secrets are shared by every queue too)


def _prefix(queue: str) -> str:
    return f"aiwyn:{queue}:metrics:"


def requests_key(queue: str) -> str:
    """Hash ``[status, reason]`` -> deliveries answered so (accepted ones counted in the storing script)."""
    return _prefix(queue) + "requests"


def request_duration_key(queue: str) -> str:
    return _prefix(queue) + "request-duration"


def last_event_key(queue: str) -> str:
    """Hash subscription id -> Unix time (Redis's clock) of its newest accepted delivery."""
    return _prefix(queue) + "last-event"


def arrivals_key(queue: str) -> str:
    """List of arrival times beside the delivery list, item for item: its head is the oldest waiting's."""
    return _prefix(queue) + "arrivals"


def events_key(queue: str) -> str:
    """Hash ``[entity_type, operation, status]`` -> events applied so, each counted once (its first ledger row)."""
    return _prefix(queue) + "events"


def events_hour_key(queue: str, hour: int) -> str:
    """The same counts for one hour (``unix time // 3600``), kept a day."""
    return _prefix(queue) + f"events:{hour}"


def lag_key(queue: str) -> str:
    """Histogram: the event's occurredAt to its commit in the mirror."""
    return _prefix(queue) + "lag"


def lag_minute_key(queue: str, minute: int) -> str:
    """The same histogram for one minute (``unix time // 60``), kept two hours."""
    return _prefix(queue) + f"lag:{minute}"


def runs_key(queue: str) -> str:
    """Hash ``[handler, outcome]`` -> handler runs ended so."""
    return _prefix(queue) + "runs"


def view_changes_key(queue: str) -> str:
    """Hash ``entity_type|action`` -> typed views created or replaced (``workers.sync.views``)."""
    return _prefix(queue) + "view-changes"


def field(*labels: str) -> str:
    return json.dumps(list(labels), separators=(",", ":"))


def labels_of(raw: bytes | str) -> tuple[str, ...]:
    return tuple(str(part) for part in json.loads(raw))


def bucket_field(buckets: Sequence[float], value: float) -> str:
    """The field of the bucket a value falls in (Prometheus buckets are upper bounds, inclusive)."""
    return str(bisect.bisect_left(buckets, value))


def micros(seconds: float) -> int:
    return max(0, round(seconds * 1_000_000))
