"""``probe``: check each assumption this service makes of Aiwyn's API against the live API, reading only.

One ``Check`` per assumption (token, catalog, subscription list and its paging, secret shape
and algorithms, ``/records/types``, a ``recordsUrl`` page), each ``confirmed`` or ``differs``
with what was seen (a shape, never a value: no token, no secret) and the setting that would
fix it. The only call that is not a GET is the token request every client makes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from aiwyn_api.client import AiwynAPIError, AiwynClient, shape
from config import Settings
from config.wire import identifier, operation, scheme_for_algorithm
from receiver.secret_store import canonical

CONFIRMED, DIFFERS, SKIPPED = "confirmed", "differs", "not checked"
_CODE_CHANGE = "no setting: report it (the contract in aiwyn-contract.md needs a change)"


@dataclass(frozen=True)
class Check:
    assumption: str
    status: str
    seen: str = ""
    fix: str = ""

    def line(self) -> str:
        status = f"{DIFFERS}: {self.seen}" if self.status == DIFFERS else self.status + (f" ({self.seen})" if self.seen else "")
        return f"{self.assumption:52} {status}" + (f"\n{'':52} fix: {self.fix}" if self.status == DIFFERS and self.fix else "")

    def to_json(self) -> dict[str, str]:
        return asdict(self)


def _failed(exc: AiwynAPIError) -> str:
    return f"{exc.status} {exc.code}: {exc.message}"[:200]


def _path_fix(exc: AiwynAPIError, setting: str) -> str:
    return f"set {setting} (or AIWYN_RECEIVER_API_PREFIX)" if exc.status in (404, 405) else _CODE_CHANGE


def _list_of(data: Any, key: str, valid: Callable[[Any], bool]) -> list[Any] | None:
    items = data.get(key) if isinstance(data, dict) else None
    return items if isinstance(items, list) and all(valid(item) for item in items) else None


def probe(client: AiwynClient, settings: Settings) -> list[Check]:
    """Every check, in order; a failed token stops the rest (they could only fail alike)."""
    wire = client.wire
    checks: list[Check] = []
    try:
        client.fetch_token()
        checks.append(Check(f"token: POST {wire.token_path}", CONFIRMED))
    except AiwynAPIError as exc:
        fix = "check AIWYN_CLIENT_ID/AIWYN_CLIENT_SECRET or AIWYN_API_KEY" if exc.status in (400, 401, 403) else _path_fix(exc, "AIWYN_RECEIVER_TOKEN_PATH")
        return [Check(f"token: POST {wire.token_path}", DIFFERS, _failed(exc), fix)]

    catalog_path = wire.subscriptions_path + "/catalog"
    try:
        data = client.get(catalog_path)
        types = _list_of(data, "entityTypes", lambda t: isinstance(t, dict) and isinstance(t.get("name"), str) and isinstance(t.get("operations"), list))
        if types is None:
            checks.append(Check(f"catalog: GET {catalog_path}", DIFFERS, f"no entityTypes list of {{name, operations}}: found {shape(data)}", _CODE_CHANGE))
        else:
            odd = sorted({str(op) for t in types for op in t["operations"] if operation(op) is None})
            if odd:
                checks.append(Check(f"catalog: GET {catalog_path}", DIFFERS, f"operations not read as CREATE/UPDATE/DELETE: {', '.join(odd[:5])}", _CODE_CHANGE))
            else:
                checks.append(Check(f"catalog: GET {catalog_path}", CONFIRMED, f"{len(types)} entity types"))
    except AiwynAPIError as exc:
        checks.append(Check(f"catalog: GET {catalog_path}", DIFFERS, _failed(exc), _path_fix(exc, "AIWYN_RECEIVER_SUBSCRIPTIONS_PATH")))

    subscriptions: list[dict[str, Any]] = []
    list_path = wire.subscriptions_path
    try:
        data = client.get(list_path, {"includeInactive": "true"})
        page = _list_of(data, "subscriptions", lambda s: isinstance(s, dict) and identifier(s.get("id")) is not None)
        if page is None:
            checks.append(Check(f"subscription list: GET {list_path}", DIFFERS, f"no subscriptions list of objects with an id: found {shape(data)}", _CODE_CHANGE))
        else:
            checks.append(Check(f"subscription list: GET {list_path}", CONFIRMED, f"{len(page)} on the first page"))
            if data.get("nextCursor"):
                subscriptions = client.list_subscriptions()
                checks.append(Check("subscription list paging (nextCursor)", CONFIRMED, f"followed: {len(subscriptions)} in all"))
            else:
                subscriptions = page
                checks.append(Check("subscription list paging (nextCursor)", CONFIRMED, "one page"))
    except AiwynAPIError as exc:
        checks.append(Check(f"subscription list: GET {list_path}", DIFFERS, _failed(exc), _path_fix(exc, "AIWYN_RECEIVER_SUBSCRIPTIONS_PATH")))

    checks.append(_secrets(client, settings, subscriptions))
    checks += _records(client)
    return checks


def _secrets(client: AiwynClient, settings: Settings, subscriptions: list[dict[str, Any]]) -> Check:
    ours = [s for s in subscriptions if settings.public_url and s.get("url") == settings.callback_url] or [s for s in subscriptions if s.get("active")]
    assumption = "signing secrets: GET .../{id}/secret"
    if not ours:
        return Check(assumption, SKIPPED, "no active subscription to read (run register first)")
    subscription_id = str(identifier(ours[0]["id"]))
    path = f"{client.wire.subscriptions_path}/{subscription_id}/secret"
    try:
        data = client.get(path)
    except AiwynAPIError as exc:
        return Check(assumption, DIFFERS, _failed(exc), _CODE_CHANGE)
    secrets = _list_of(data, "secrets", lambda s: isinstance(s, dict) and isinstance(s.get("secret"), str))
    if not secrets:
        return Check(assumption, DIFFERS, f"no secrets list of {{secret, algorithm}}: found {shape(data)}", _CODE_CHANGE)
    labels = sorted({str(s.get("algorithm")) for s in secrets})
    unknown = [label for label in labels if label != "None" and scheme_for_algorithm(label) is None]
    if unknown:
        return Check(assumption, DIFFERS, f"algorithm(s) {', '.join(unknown)}, not v1/hmac-sha256 or v1a/ed25519", _CODE_CHANGE)
    if any(canonical(subscription_id, s) is None for s in secrets):
        return Check(assumption, DIFFERS, "a key whose prefix contradicts its algorithm", "ask Aiwyn: such a secret is refused")
    return Check(assumption, CONFIRMED, f"{len(secrets)} secret(s), algorithm(s) {', '.join(labels)} of {subscription_id}")


def _records(client: AiwynClient) -> list[Check]:
    path = client.wire.record_types_path
    try:
        data = client.get(path)
    except AiwynAPIError as exc:
        return [Check(f"record types: GET {path}", DIFFERS, _failed(exc), "set AIWYN_RECEIVER_API_PREFIX" if exc.status == 404 else _CODE_CHANGE)]
    types = _list_of(data, "entityTypes", lambda t: isinstance(t, dict) and isinstance(t.get("name"), str))
    if not types:
        return [Check(f"record types: GET {path}", DIFFERS, f"no entityTypes list of {{name, recordsUrl}}: found {shape(data)}", _CODE_CHANGE)]
    without = [t["name"] for t in types if not isinstance(t.get("recordsUrl"), str)]
    checks = [
        Check(f"record types: GET {path}", DIFFERS, f"no recordsUrl for {', '.join(without[:5])}", _CODE_CHANGE)
        if without
        else Check(f"record types: GET {path}", CONFIRMED, f"{len(types)} types, each with a recordsUrl")
    ]
    first = next((t for t in types if isinstance(t.get("recordsUrl"), str)), None)
    if first is None:
        return checks
    assumption = f"records listing: GET {first['recordsUrl']}"
    try:
        page = client.list_records(first["recordsUrl"], {"limit": "1", "includeInactive": "true"})
    except AiwynAPIError as exc:
        return [*checks, Check(assumption, DIFFERS, _failed(exc), _CODE_CHANGE)]
    records = _list_of(page, "records", lambda r: isinstance(r, dict) and identifier(r.get("id")) is not None)
    if records is None or "nextCursor" not in page:
        return [*checks, Check(assumption, DIFFERS, f"no {{records, nextCursor}} page: found {shape(page)}", _CODE_CHANGE)]
    return [*checks, Check(assumption, CONFIRMED, f"{len(records)} record(s) on a page of limit=1")]
