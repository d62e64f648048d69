"""The configured subscriptions, read from a TOML file (``config/subscriptions.toml`` by default)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from config.settings import SettingsError

OPERATIONS = ("CREATE", "UPDATE", "DELETE")
SIGNATURE_ALGORITHMS = ("v1", "v1a")
# Every subscription this service makes is named with this prefix. Registration tells ours by the
# mark in their description (receiver/registration.py); prefix and callback URL tell those made before it.
OWNED_PREFIX = "aiwyn-receiver-"


@dataclass(frozen=True)
class SubscriptionSpec:
    """What one subscription at Aiwyn must look like."""

    name: str
    entity_types: tuple[str, ...]
    operations: tuple[str, ...]
    description: str | None = None
    # "v1" (HMAC, Aiwyn's default) or "v1a" (Ed25519); Aiwyn takes it when a subscription is created only.
    signature_algorithm: str | None = None


def load_subscriptions(path: Path) -> list[SubscriptionSpec]:
    """Parse and check the file; a mistake stops the start with a line naming the entry."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError(f"subscriptions file {path}: {exc}") from exc
    specs: list[SubscriptionSpec] = []
    for index, entry in enumerate(data.get("subscription", [])):
        where = f"subscriptions file {path}, entry {index + 1}"
        name = entry.get("name")
        types = entry.get("entity_types")
        ops = entry.get("operations", list(OPERATIONS))
        if not isinstance(name, str) or not name.strip():
            raise SettingsError(f"{where}: 'name' must be a non-empty string")
        if not name.strip().startswith(OWNED_PREFIX):
            raise SettingsError(f"{where} ({name}): 'name' must start with {OWNED_PREFIX!r}, which marks the subscriptions of this service")
        if not isinstance(types, list) or not types or not all(isinstance(t, str) and t for t in types):
            raise SettingsError(f"{where} ({name}): 'entity_types' must be a non-empty list of names")
        if not isinstance(ops, list) or not ops or any(op not in OPERATIONS for op in ops):
            raise SettingsError(f"{where} ({name}): 'operations' must list some of {', '.join(OPERATIONS)}")
        algorithm = entry.get("signature_algorithm")
        if algorithm not in (None, *SIGNATURE_ALGORITHMS):
            raise SettingsError(f"{where} ({name}): 'signature_algorithm' must be one of {', '.join(SIGNATURE_ALGORITHMS)}")
        specs.append(SubscriptionSpec(name.strip(), tuple(types), tuple(ops), entry.get("description"), algorithm))
    names = [spec.name for spec in specs]
    if not specs:
        raise SettingsError(f"subscriptions file {path}: no [[subscription]] entry")
    if len(set(names)) != len(names):
        raise SettingsError(f"subscriptions file {path}: subscription names must be unique")
    return specs
