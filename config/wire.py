"""The wire: every detail of Aiwyn's API and deliveries that the contract only assumes (§2–§4).

Aiwyn publishes its Event Subscriptions API and delivery format by name only. Whatever the
receiver, the API client and the workers rely on of it is named here, once: API paths, header
names, signature and secret labels, the timestamp unit, body field names and operation names.
What a deployment may need to change is read from the settings (``wire_for``); the rest is
read tolerantly (``field``, ``operation``, ``scheme_for_algorithm``), so that a reasonable
sender's variant needs no setting at all. Verification is never loosened here: the signature
and the timestamp window stay as strict as the contract says.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from config.settings import Settings

# Delivery headers per profile: (id, timestamp, signature). "svix" is the most common Standard
# Webhooks sender; its headers carry the same values under other names.
PROFILES: dict[str, tuple[str, str, str]] = {
    "standard": ("webhook-id", "webhook-timestamp", "webhook-signature"),
    "svix": ("svix-id", "svix-timestamp", "svix-signature"),
}
DEFAULT_SUBSCRIPTION_HEADER = "aiwyn-subscription-id"

# Signature labels in the signature header, and the secret prefixes of each scheme.
HMAC, ED25519 = "v1", "v1a"
SECRET_PREFIXES = {HMAC: "whsec_", ED25519: "whpk_"}
# A secret's ``algorithm`` as the secrets API may spell it -> the signature scheme it verifies.
ALGORITHMS = {"v1": HMAC, "hmac-sha256": HMAC, "hmac_sha256": HMAC, "v1a": ED25519, "ed25519": ED25519}

# The timestamp header is Unix seconds; a 13-digit value is taken as milliseconds.
SECONDS_MAX_DIGITS = 12
MILLISECONDS_DIGITS = 13

OPERATIONS = ("CREATE", "UPDATE", "DELETE")
_OPERATION_SPELLINGS = {spelling: op for op in OPERATIONS for spelling in (op, op + "D")}


@dataclass(frozen=True)
class Wire:
    """The wire details a deployment may set: delivery header names and API paths."""

    profile: str = "standard"
    header_id: str = "webhook-id"
    header_timestamp: str = "webhook-timestamp"
    header_signature: str = "webhook-signature"
    header_subscription: str = DEFAULT_SUBSCRIPTION_HEADER  # "": the body's subscriptionId only
    api_prefix: str = "/api/v1"
    token_path: str = "/api/v1/auth/token"
    subscriptions_path: str = "/api/v1/event-subscriptions"

    @property
    def record_types_path(self) -> str:
        return self.api_prefix + "/records/types"

    def records_path(self, entity_type: str) -> str:
        """Where a type's records are listed when ``/records/types`` gives no ``recordsUrl``."""
        return f"{self.api_prefix}/records/{entity_type}"


DEFAULT_WIRE = Wire()


def wire_for(settings: Settings) -> Wire:
    """The deployment's wire: the profile's headers, each overridable, and the API paths."""
    header_id, header_timestamp, header_signature = PROFILES[settings.wire_profile]
    prefix = settings.api_prefix
    return Wire(
        profile=settings.wire_profile,
        header_id=settings.header_id or header_id,
        header_timestamp=settings.header_timestamp or header_timestamp,
        header_signature=settings.header_signature or header_signature,
        header_subscription=settings.header_subscription,
        api_prefix=prefix,
        token_path=settings.token_path or prefix + "/auth/token",
        subscriptions_path=settings.subscriptions_path or prefix + "/event-subscriptions",
    )


def scheme_for_algorithm(label: Any) -> str | None:
    """The signature scheme a secret of this ``algorithm`` label verifies; None for an unknown one."""
    return ALGORITHMS.get(label.strip().lower()) if isinstance(label, str) else None


def snake(name: str) -> str:
    """``occurredAt`` -> ``occurred_at``."""
    return "".join("_" + c.lower() if c.isupper() else c for c in name)


def field(data: Mapping[str, Any], name: str, default: Any = None) -> Any:
    """A body field by its contract (camelCase) name, or its snake_case spelling."""
    if name in data:
        return data[name]
    return data.get(snake(name), default)


def identifier(value: Any) -> str | None:
    """An id sent as a string or an integer, as a string (ids are compared as strings)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    return value if isinstance(value, str) and value else None


def operation(value: Any) -> str | None:
    """CREATE, UPDATE or DELETE from any case, and from CREATED, UPDATED, DELETED; else None."""
    return _OPERATION_SPELLINGS.get(value.strip().upper()) if isinstance(value, str) else None
