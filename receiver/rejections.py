"""The last rejected deliveries, kept in Redis so that an operator can see why, and what fixes it.

The web process pushes one small record per refusal (one pipelined LPUSH + LTRIM, only on
refusals: an accepted delivery costs nothing here): when, the status and reason, the names
of the headers present, the delivery's id, its subscription, the body's size and how far its
timestamp was from our clock. Never a header value of a signature, never the body: what is
kept is safe to print. ``diagnose`` reads a pattern in them and names the setting or the
command that fixes it.
"""

from __future__ import annotations

import json
import statistics
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass

import redis

from config.wire import PROFILES, Wire

KEY = "aiwyn:rejections"
KEEP = 100
_MAX_HEADERS = 40


@dataclass(frozen=True)
class Rejection:
    """One refused delivery, without anything secret."""

    at: float
    status: int
    reason: str
    headers: tuple[str, ...]  # names only, lower-case, sorted
    event_id: str
    subscription_id: str
    body_bytes: int | None
    clock_offset: float | None  # the timestamp header minus our clock, in seconds, when readable

    def to_json(self) -> dict[str, object]:
        return {**asdict(self), "headers": list(self.headers)}


def describe_request(
    headers: Mapping[str, str], wire: Wire, *, status: int, reason: str, subscription_id: str, body_bytes: int | None, now: float | None = None
) -> Rejection:
    """The rejection record of a request: names of headers, never their values (but the id's)."""
    now = time.time() if now is None else now
    names = tuple(sorted({name.lower()[:60] for name in headers.keys()}))[:_MAX_HEADERS]
    ids = [wire.header_id] + [profile[0] for profile in PROFILES.values()]
    event_id = next((headers.get(name) for name in ids if headers.get(name)), "") or ""
    stamps = [wire.header_timestamp] + [profile[1] for profile in PROFILES.values()]
    raw = next((headers.get(name) for name in stamps if headers.get(name)), "") or ""
    offset = None
    if raw.isascii() and raw.isdigit() and len(raw) <= 13:
        offset = round((int(raw) / 1000 if len(raw) == 13 else int(raw)) - now, 1)
    return Rejection(now, status, reason[:200], names, event_id[:100], subscription_id[:100], body_bytes, offset)


def remember(connection: redis.Redis, rejection: Rejection) -> None:
    """Keep it among the last ``KEEP``: one round trip, only for a refused delivery."""
    pipe = connection.pipeline(transaction=False)
    pipe.lpush(KEY, json.dumps(rejection.to_json()))
    pipe.ltrim(KEY, 0, KEEP - 1)
    pipe.execute()


def recent(connection: redis.Redis, limit: int = KEEP) -> list[Rejection]:
    """The latest rejections, newest first."""
    found = []
    for raw in connection.lrange(KEY, 0, limit - 1):
        try:
            data = json.loads(raw)
            found.append(Rejection(**{**data, "headers": tuple(data["headers"])}))
        except (ValueError, TypeError, KeyError):
            continue  # written by another version: skipped, not fatal
    return found


def _ago(seconds: float) -> str:
    size = abs(seconds)
    return f"{size / 3600:.0f} h" if size >= 5400 else f"{size / 60:.0f} min" if size >= 90 else f"{size:.0f} s"


def diagnose(rejections: Sequence[Rejection], wire: Wire) -> list[str]:
    """Fixes for the patterns that are clear in these rejections (empty when none is)."""
    hints: list[str] = []
    signed = [r for r in rejections if r.status == 401]
    seen = set().union(*(set(r.headers) for r in signed)) if signed else set()
    ours = {wire.header_id, wire.header_timestamp, wire.header_signature}
    for name, profile in PROFILES.items():
        if name != wire.profile and set(profile) <= seen and not ours & seen:
            hints.append(f"deliveries carry {', '.join(profile)}: set AIWYN_RECEIVER_WIRE_PROFILE={name}")
    if not hints and signed:
        for setting, header, suffix in (
            ("AIWYN_RECEIVER_HEADER_ID", wire.header_id, "-id"),
            ("AIWYN_RECEIVER_HEADER_TIMESTAMP", wire.header_timestamp, "-timestamp"),
            ("AIWYN_RECEIVER_HEADER_SIGNATURE", wire.header_signature, "-signature"),
        ):
            missing = [r for r in signed if r.reason == f"missing {header} header"]
            others = _common(r.headers for r in missing)
            candidates = sorted(h for h in others if h.endswith(suffix) and h != header and "subscription" not in h)
            if missing and len(missing) == len(signed) and candidates:
                hints.append(f"deliveries carry {candidates[0]} but no {header}: set {setting}={candidates[0]}")
    unnamed = [r for r in signed if r.reason.startswith("no subscription named")]
    if unnamed:
        candidates = sorted(h for h in _common(r.headers for r in unnamed) if "subscription" in h)
        where = f"; they carry {candidates[0]}: set AIWYN_RECEIVER_HEADER_SUBSCRIPTION={candidates[0]}" if candidates else ""
        hints.append(f"{len(unnamed)} deliveries name no subscription in {wire.header_subscription or 'a header'} or the body{where}")
    by_subscription: dict[str, list[Rejection]] = {}
    for rejection in signed:
        by_subscription.setdefault(rejection.subscription_id, []).append(rejection)
    for subscription, group in sorted(by_subscription.items()):
        reasons = Counter(r.reason for r in group)
        if subscription and reasons.get("no signature matches a current secret") == len(group):
            hints.append(f"every signature fails for {subscription}: its secret changed, run register (python -m receiver register)")
        if subscription and reasons.get("unknown subscription") == len(group):
            hints.append(f"deliveries for {subscription}, which is not one of ours: run register, or check PUBLIC_URL and AIWYN_RECEIVER_INSTANCE")
    stale = [r.clock_offset for r in signed if r.clock_offset is not None and ("too old" in r.reason or "too far in the future" in r.reason)]
    if stale and len(stale) * 2 >= len(signed):
        offset = statistics.median(stale)
        direction = "behind" if offset < 0 else "ahead of"
        hints.append(f"timestamps are {_ago(offset)} {direction} this host's clock: check the clock (here or at the sender)")
    return hints


def _common(header_sets: Iterable[tuple[str, ...]]) -> set[str]:
    sets = [set(h) for h in header_sets]
    return set.intersection(*sets) if sets else set()
