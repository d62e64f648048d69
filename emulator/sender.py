"""Background delivery: signed POSTs of events with retries, faults on demand, and a delivery log.

A scheduler thread keeps a heap of deliveries by due time and hands due ones to a pool of
worker threads. A delivery is one copy of one event (the `duplicate` fault makes two); it
ends `delivered`, `dropped` (schedule exhausted or 410) or `cancelled` (subscription gone).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import queue
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import httpx

from .clock import utc_now
from .settings import Settings
from .signing import signature_header
from .state import Attempt, Event, Faults, Store

logger = logging.getLogger("emulator.sender")


@dataclass(frozen=True)
class Delivery:
    """One copy of an event on its way; `attempt` is the number of the next attempt (from 1)."""

    event_id: str
    subscription_id: str
    body: bytes
    attempt: int
    generation: int


class Sender:
    """Delivers events to their subscriptions' urls on background threads."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self._settings = settings
        self._store = store
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Delivery]] = []
        self._order = itertools.count()
        self._buffer: list[Delivery] = []
        self._buffer_deadline: float | None = None
        self._tasks: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._generation = 0
        self._counts = _zero_counts()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._client: httpx.Client | None = None

    def start(self) -> None:
        """Start the scheduler and the worker threads."""
        # trust_env=False: a proxy from the environment must not stand between us and local receivers.
        ca_file = self._settings.tls_ca_file
        self._client = httpx.Client(
            timeout=self._settings.delivery_timeout,
            trust_env=False,
            follow_redirects=False,
            verify=ssl.create_default_context(cafile=ca_file) if ca_file else True,
        )
        self._threads = [threading.Thread(target=self._schedule_loop, name="emulator-scheduler", daemon=True)]
        for n in range(self._settings.sender_threads):
            self._threads.append(threading.Thread(target=self._work_loop, name=f"emulator-sender-{n}", daemon=True))
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Stop all threads; an attempt in flight may take up to the delivery timeout to end."""
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
        for _ in range(self._settings.sender_threads):
            self._tasks.put(None)
        for thread in self._threads:
            thread.join(timeout=self._settings.delivery_timeout + 1)
        if self._client is not None:
            self._client.close()

    def submit(self, events: list[Event]) -> None:
        """Queue the first attempt of each event, applying the duplicate and reorder faults."""
        if not events:
            return
        with self._store.lock:
            faults = self._store.faults
            copies = 2 if faults.duplicate else 1
            for event in events:
                event.open_copies += copies
        now = time.monotonic()
        with self._cond:
            for event in events:
                for _ in range(copies):
                    delivery = Delivery(event.id, event.subscription_id, event.body, 1, self._generation)
                    self._counts["pending"] += 1
                    if faults.reorder:
                        self._buffer.append(delivery)
                        if self._buffer_deadline is None:
                            self._buffer_deadline = now + faults.reorder_window_ms / 1000
                    else:
                        heapq.heappush(self._heap, (now, next(self._order), delivery))
            self._cond.notify_all()

    def cancel_subscription(self, subscription_id: str) -> None:
        """End every waiting delivery of a deactivated subscription as `cancelled`."""
        with self._cond:
            cancelled = [d for _, _, d in self._heap if d.subscription_id == subscription_id]
            cancelled += [d for d in self._buffer if d.subscription_id == subscription_id]
            self._heap = [e for e in self._heap if e[2].subscription_id != subscription_id]
            heapq.heapify(self._heap)
            self._buffer = [d for d in self._buffer if d.subscription_id != subscription_id]
        for delivery in cancelled:
            self._finish(delivery, "cancelled")

    def reset(self) -> None:
        """Forget every waiting delivery and zero the counters; attempts in flight are ignored."""
        with self._cond:
            self._generation += 1
            self._heap.clear()
            self._buffer.clear()
            self._buffer_deadline = None
            self._counts = _zero_counts()
            self._cond.notify_all()

    def stats(self) -> dict[str, int]:
        """Counters: deliveries pending, delivered, dropped, cancelled; attempts made."""
        with self._cond:
            return dict(self._counts)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no delivery is pending; False if `timeout` seconds passed first."""
        with self._cond:
            return self._cond.wait_for(lambda: self._counts["pending"] == 0, timeout)

    def _schedule_loop(self) -> None:
        while not self._stopping.is_set():
            with self._cond:
                now = time.monotonic()
                due = []
                while self._heap and self._heap[0][0] <= now:
                    due.append(heapq.heappop(self._heap)[2])
                batch = []
                if self._buffer_deadline is not None and self._buffer_deadline <= now:
                    batch = list(reversed(self._buffer))
                    self._buffer.clear()
                    self._buffer_deadline = None
                if not due and not batch:
                    next_due = self._heap[0][0] if self._heap else None
                    wake = [t for t in (next_due, self._buffer_deadline) if t is not None]
                    self._cond.wait(min(wake) - now if wake else None)
                    continue
            for delivery in due:
                self._tasks.put(lambda d=delivery: self._attempt(d))
            if batch:
                # One task sends the reversed window in sequence, so the reversal is what arrives.
                self._tasks.put(lambda b=batch: self._attempt_in_sequence(b))

    def _work_loop(self) -> None:
        while True:
            task = self._tasks.get()
            if task is None or self._stopping.is_set():
                return
            try:
                task()
            except Exception:
                # A bug, not a delivery failure (those are handled in _attempt): log it, keep the worker.
                logger.exception("sender task failed")

    def _attempt_in_sequence(self, batch: list[Delivery]) -> None:
        for delivery in batch:
            if self._stopping.is_set():
                return
            self._attempt(delivery)

    def _stale(self, delivery: Delivery) -> bool:
        return delivery.generation != self._generation

    def _attempt(self, delivery: Delivery) -> None:
        if self._stale(delivery):
            return
        delay_ms = self._store.faults.delay_ms
        if delay_ms and self._stopping.wait(delay_ms / 1000):
            return
        now = utc_now()
        started = time.monotonic()
        with self._store.lock:
            subscription = self._store.subscriptions.get(delivery.subscription_id)
            if subscription is None or not subscription.active:
                subscription = None
            else:
                url = subscription.url
                secrets = [(s.value, s.private_key) for s in subscription.current_secrets(now)]
        if subscription is None:
            self._finish(delivery, "cancelled")
            return
        headers = _headers(self._store.faults, delivery, secrets)
        status, error = self._post(url, delivery.body, headers)
        duration_ms = int((time.monotonic() - started) * 1000)
        schedule = self._settings.retry_schedule
        outcome = _outcome(status, delivery.attempt, len(schedule))
        with self._store.lock:
            if self._stale(delivery):
                return
            self._store.log_attempt(
                Attempt(delivery.event_id, delivery.subscription_id, delivery.attempt, now, status, error, duration_ms, outcome)
            )
            if status == 410 and subscription.active:
                subscription.active = False
                subscription.updated_at = utc_now()
        logger.info(
            "delivery event=%s subscription=%s attempt=%d status=%s error=%s ms=%d outcome=%s",
            delivery.event_id,
            delivery.subscription_id,
            delivery.attempt,
            status,
            error,
            duration_ms,
            outcome,
        )
        with self._cond:
            if self._stale(delivery):
                return
            self._counts["attempts"] += 1
            if outcome == "retrying":
                due = time.monotonic() + schedule[delivery.attempt - 1]
                retry = replace(delivery, attempt=delivery.attempt + 1)
                heapq.heappush(self._heap, (due, next(self._order), retry))
                self._cond.notify_all()
        if status == 410:
            logger.warning("subscription %s answered 410 Gone: deactivated", delivery.subscription_id)
            self.cancel_subscription(delivery.subscription_id)
        if outcome != "retrying":
            self._finish(delivery, outcome)

    def _post(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[int | None, str | None]:
        """POST once: the HTTP status, or None and what went wrong on the way."""
        assert self._client is not None, "Sender.start() was not called"
        try:
            response = self._client.post(url, content=body, headers=headers)
        except httpx.TimeoutException:
            return None, "timeout"
        except httpx.ConnectError as exc:
            return None, "connection refused" if "refused" in str(exc).lower() else f"connect error: {exc}"
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}"
        return response.status_code, None

    def _finish(self, delivery: Delivery, outcome: str) -> None:
        with self._store.lock:
            if self._stale(delivery):
                return
            event = self._store.events.get(delivery.event_id)
            if event is not None:
                event.open_copies -= 1
                event.copies[outcome] = event.copies.get(outcome, 0) + 1
                if event.copies.get("delivered"):
                    event.outcome = "delivered"
                elif event.open_copies == 0:
                    event.outcome = "dropped" if event.copies.get("dropped") else "cancelled"
        with self._cond:
            if self._stale(delivery):
                return
            self._counts["pending"] -= 1
            self._counts[outcome] += 1
            self._cond.notify_all()


# Header names by dialect: (id, timestamp, signature). svix is the most common Standard Webhooks sender.
DIALECT_HEADERS = {"standard": ("webhook-id", "webhook-timestamp", "webhook-signature"), "svix": ("svix-id", "svix-timestamp", "svix-signature")}


def _headers(faults: Faults, delivery: Delivery, secrets: list[tuple[str, bytes | None]]) -> dict[str, str]:
    """One attempt's headers, signed now, named and shaped as the header faults in force say."""
    id_header, timestamp_header, signature_header_name = DIALECT_HEADERS[faults.dialect]
    timestamp = int(time.time() * 1000) if faults.timestamp_millis else int(time.time())
    # The message id is stable across attempts, like the event id it stands for.
    message_id = "msg_" + delivery.event_id.removeprefix("evt_") if faults.separate_message_id else delivery.event_id
    headers = {
        "Content-Type": "application/json",
        id_header: message_id,
        timestamp_header: str(timestamp),
        signature_header_name: signature_header(secrets, message_id, timestamp, delivery.body),
    }
    if not faults.no_subscription_header:
        headers["aiwyn-subscription-id"] = delivery.subscription_id
    return headers


def _zero_counts() -> dict[str, int]:
    return {"pending": 0, "delivered": 0, "dropped": 0, "cancelled": 0, "attempts": 0}


def _outcome(status: int | None, attempt: int, retries: int) -> str:
    """What became of one attempt: delivered (2xx), dropped (410, or the retries spent), or retrying."""
    if status is not None and 200 <= status < 300:
        return "delivered"
    if status == 410 or attempt > retries:
        return "dropped"
    return "retrying"
