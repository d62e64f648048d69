"""The emulator's in-memory world: subscriptions, records, events and the delivery log, under one lock.

Every read or write of a `Store` field happens while holding `store.lock`; the objects are
plain dataclasses so that the API modules and the sender can share them without copies.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .clock import iso_millis, iso_seconds, utc_now
from .ids import SortableIds
from .listing import RecordIndex, from_micros, to_micros
from .rate_limit import RateLimiter
from .signing import new_secret

if TYPE_CHECKING:
    from .custom_types import CustomType


@dataclass
class SigningSecret:
    """One signing secret of a subscription; it signs until `expires_at` (never when None)."""

    value: str
    algorithm: str
    created_at: datetime
    expires_at: datetime | None = None
    private_key: bytes | None = field(default=None, repr=False)  # v1a: signs; `value` is its public key

    @classmethod
    def fresh(cls, algorithm: str, now: datetime) -> SigningSecret:
        value, private_key = new_secret(algorithm)
        return cls(value, algorithm, now, private_key=private_key)

    def is_current(self, now: datetime) -> bool:
        """Whether this secret still signs deliveries at `now`."""
        return self.expires_at is None or now < self.expires_at

    def to_json(self) -> dict[str, Any]:
        """The contract's secret object."""
        return {
            "secret": self.value,
            "algorithm": self.algorithm,
            "createdAt": iso_seconds(self.created_at),
            "expiresAt": iso_seconds(self.expires_at) if self.expires_at else None,
        }


@dataclass
class Subscription:
    """An event subscription (contract §3); `secrets` are newest first."""

    id: str
    name: str
    url: str
    entity_types: list[str]
    operations: list[str]
    description: str | None
    active: bool
    created_at: datetime
    updated_at: datetime
    secrets: list[SigningSecret] = field(default_factory=list)

    def matches(self, entity_type: str, operation: str) -> bool:
        """Whether a change of `entity_type` by `operation` is delivered to this subscription."""
        types_match = self.entity_types == ["*"] or entity_type in self.entity_types
        return self.active and types_match and operation in self.operations

    def current_secrets(self, now: datetime) -> list[SigningSecret]:
        """The secrets that sign a delivery made at `now`."""
        return [s for s in self.secrets if s.is_current(now)]

    def to_json(self) -> dict[str, Any]:
        """The contract's subscription object."""
        return {
            "id": self.id,
            "name": self.name,
            "url": self.url,
            "entityTypes": list(self.entity_types),
            "operations": list(self.operations),
            "description": self.description,
            "active": self.active,
            "createdAt": iso_seconds(self.created_at),
            "updatedAt": iso_seconds(self.updated_at),
        }


@dataclass
class Record:
    """A stored record, named by `id` and matched by `(type, system, system_id)` when it has a systemRef."""

    id: str
    type: str
    system: str | None
    system_id: str | None
    attributes: dict[str, Any]
    active: bool
    version: int
    created_at: datetime
    updated_at: datetime

    @property
    def key(self) -> tuple[str, str, str] | None:
        """The upsert match key; None for a record created without a systemRef (it never matches)."""
        if self.system is None or self.system_id is None:
            return None
        return (self.type, self.system, self.system_id)

    @property
    def system_ref(self) -> dict[str, str] | None:
        """The contract's `systemRef`, or null."""
        if self.system is None or self.system_id is None:
            return None
        return {"system": self.system, "id": self.system_id}

    def to_json(self) -> dict[str, Any]:
        """The record as an event body carries it (contract §4)."""
        return {
            "id": self.id,
            "type": self.type,
            "version": self.version,
            "active": self.active,
            "systemRef": self.system_ref,
            "attributes": dict(self.attributes),
        }

    def to_listing_json(self) -> dict[str, Any]:
        """The record as the listing and the single read return it (contract §5b)."""
        return {**self.to_json(), "createdAt": iso_millis(self.created_at), "updatedAt": iso_millis(self.updated_at)}


@dataclass
class Event:
    """One event for one subscription; `body` is serialized once and sent as is on every attempt."""

    id: str
    subscription_id: str
    entity_type: str
    operation: str
    record_id: str
    version: int
    occurred_at: datetime
    body: bytes
    outcome: str = "pending"  # pending | delivered | dropped | cancelled
    attempts: int = 0
    open_copies: int = 0
    copies: dict[str, int] = field(default_factory=dict)  # finished copies by outcome

    def to_json(self) -> dict[str, Any]:
        """The event as `GET /_emulator/events` lists it."""
        return {
            "id": self.id,
            "subscriptionId": self.subscription_id,
            "entityType": self.entity_type,
            "operation": self.operation,
            "recordId": self.record_id,
            "version": self.version,
            "occurredAt": iso_millis(self.occurred_at),
            "outcome": self.outcome,
            "attempts": self.attempts,
            "body": self.body.decode("utf-8"),
        }


@dataclass(frozen=True)
class Attempt:
    """One delivery attempt, as the delivery log shows it."""

    event_id: str
    subscription_id: str
    attempt: int
    at: datetime
    status: int | None
    error: str | None
    duration_ms: int
    outcome: str  # delivered | retrying | dropped

    def to_json(self) -> dict[str, Any]:
        """The attempt as `GET /_emulator/subscriptions/{id}/deliveries` lists it."""
        return {
            "eventId": self.event_id,
            "attempt": self.attempt,
            "at": iso_millis(self.at),
            "status": self.status,
            "error": self.error,
            "durationMs": self.duration_ms,
            "outcome": self.outcome,
        }


@dataclass(frozen=True)
class Faults:
    """Delivery faults on demand: duplicates, reversed windows of events, a delay before attempts."""

    duplicate: bool = False
    reorder: bool = False
    reorder_window_ms: int = 200
    delay_ms: int = 0
    rate_limit_per_second: int = 0  # calls of /api/v1 a second across clients; 0 = no limit
    # Wire variants a real sender may use (the receiver must read them all; see emulator/README.md).
    dialect: str = "standard"  # header names: webhook-* (standard) or svix-* (svix)
    no_subscription_header: bool = False  # the body's subscriptionId is the only place naming it
    timestamp_millis: bool = False  # the timestamp header in Unix milliseconds
    integer_ids: bool = False  # record ids as JSON integers in the body
    snake_case: bool = False  # subscription_id, entity_type, occurred_at, system_ref
    past_tense_operations: bool = False  # CREATED, UPDATED, DELETED
    separate_message_id: bool = False  # webhook-id is a message id (msg_...), the body keeps the event id

    def to_json(self) -> dict[str, Any]:
        """The shape of `GET /_emulator/faults`."""
        return {
            "duplicate": self.duplicate,
            "reorder": self.reorder,
            "reorderWindowMs": self.reorder_window_ms,
            "delayMs": self.delay_ms,
            "rateLimitPerSecond": self.rate_limit_per_second,
            "dialect": self.dialect,
            "noSubscriptionHeader": self.no_subscription_header,
            "timestampMillis": self.timestamp_millis,
            "integerIds": self.integer_ids,
            "snakeCase": self.snake_case,
            "pastTenseOperations": self.past_tense_operations,
            "separateMessageId": self.separate_message_id,
        }

    def updated(self, **changes: Any) -> Faults:
        """A copy with `changes` applied."""
        return replace(self, **changes)


class Store:
    """All mutable state of one emulator; hold `lock` for every access."""

    def __init__(self, startup_faults: Faults) -> None:
        self.lock = threading.RLock()
        self.ids = SortableIds()
        self.startup_faults = startup_faults
        self.faults = startup_faults
        self.subscriptions: dict[str, Subscription] = {}
        self.records: dict[str, Record] = {}
        self.record_keys: dict[tuple[str, str, str], str] = {}
        self.events: dict[str, Event] = {}
        self.attempts: dict[str, list[Attempt]] = {}
        self.api_calls: dict[str, int] = {}  # "METHOD /route/<rule>" -> count, for tests of callers' restraint
        self.custom_types: dict[str, CustomType] = {}  # by name, in creation order
        self.index = RecordIndex()
        self.limiter = RateLimiter()
        self.seed_serial = 0  # numbers seeded systemRefs, unique across seed calls
        self.integer_ids: dict[str, int] = {}  # record id -> its number under the integerIds fault
        self._last_stamp = 0

    def clear(self) -> None:
        """Forget subscriptions, records, custom types, events and attempts; faults go back to the start-up ones."""
        with self.lock:
            self.subscriptions.clear()
            self.records.clear()
            self.record_keys.clear()
            self.custom_types.clear()
            self.index.clear()
            self.limiter.reset()
            self.seed_serial = 0
            self.integer_ids.clear()
            self.events.clear()
            self.attempts.clear()
            self.api_calls.clear()
            self.faults = self.startup_faults

    def find_record(self, entity_type: str, system: str, system_id: str) -> Record | None:
        """The record matched by its systemRef, inactive ones included."""
        record_id = self.record_keys.get((entity_type, system, system_id))
        return self.records.get(record_id) if record_id else None

    def next_stamp(self) -> datetime:
        """Now, but strictly later than every stamp before: (updatedAt, id) order never ties or goes back."""
        micros = max(to_micros(utc_now()), self._last_stamp + 1)
        self._last_stamp = micros
        return from_micros(micros)

    def add_record(self, record: Record) -> None:
        """Store a new record and index it by its match key and its listing key."""
        self.records[record.id] = record
        if record.key is not None:
            self.record_keys[record.key] = record.id
        self.index.put(record.id, record.type, record.updated_at, record.active)

    def reindex(self, record: Record) -> None:
        """Move the record in the listing after a change of `updated_at` or `active`."""
        self.index.put(record.id, record.type, record.updated_at, record.active)

    def remove_record(self, record: Record) -> None:
        """Forget the record entirely (a hard delete): no key, no listing entry."""
        self.records.pop(record.id, None)
        if record.key is not None and self.record_keys.get(record.key) == record.id:
            del self.record_keys[record.key]
        self.index.remove(record.id)

    def log_attempt(self, attempt: Attempt) -> None:
        """Append to the subscription's delivery log and count it on the event."""
        self.attempts.setdefault(attempt.subscription_id, []).append(attempt)
        event = self.events.get(attempt.event_id)
        if event is not None:
            event.attempts += 1
