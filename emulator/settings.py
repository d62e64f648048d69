"""The emulator's settings, read once at start from `EMULATOR_*` variables and command-line flags.

| variable                    | flag                  | default                             |
|-----------------------------|-----------------------|-------------------------------------|
| `EMULATOR_HOST`             | `--host`              | `127.0.0.1`                         |
| `EMULATOR_PORT`             | `--port`              | `8700` (0 picks a free port)        |
| `EMULATOR_CLIENT_ID`        | `--client-id`         | `local-client`                      |
| `EMULATOR_CLIENT_SECRET`    | `--client-secret`     | `local-secret`                      |
| `EMULATOR_API_KEY`          | `--api-key`           | `local-api-key`                     |
| `EMULATOR_TOKEN_TTL`        | `--token-ttl`         | `3600` seconds                      |
| `EMULATOR_RETRY_SCHEDULE`   | `--retry-schedule`    | `5,30,120,600,3600,21600,86400`     |
| `EMULATOR_DELIVERY_TIMEOUT` | `--delivery-timeout`  | `10` seconds                        |
| `EMULATOR_SENDER_THREADS`   | `--sender-threads`    | `4`                                 |
| `EMULATOR_SECRET_GRACE`     | `--secret-grace`      | `86400` seconds                     |
| `EMULATOR_TLS_CA_FILE`      | `--tls-ca-file`       | none: the system's CAs (https deliveries) |
| `EMULATOR_DUPLICATE`        | `--duplicate`         | off (fault: send every event twice) |
| `EMULATOR_REORDER`          | `--reorder`           | off (fault: reverse each window)    |
| `EMULATOR_REORDER_WINDOW_MS`| `--reorder-window-ms` | `200`                               |
| `EMULATOR_DELAY_MS`         | `--delay-ms`          | `0` (fault: wait before attempts)   |
| `EMULATOR_RATE_LIMIT_PER_SECOND` | `--rate-limit-per-second` | `0` = off (fault: 429 above it) |
| `EMULATOR_DIALECT`          | `--dialect`           | `standard` (`svix`: svix-* headers) |

`Settings.from_env` is the only reader of the environment; everything else is handed a `Settings`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

PREFIX = "EMULATOR_"
CONTRACT_RETRY_SCHEDULE = (5.0, 30.0, 120.0, 600.0, 3600.0, 21600.0, 86400.0)


class SettingsError(Exception):
    """One or more settings are malformed; the message names each of them."""


@dataclass(frozen=True)
class Settings:
    """Every tunable of the emulator; the module docstring lists names and defaults."""

    host: str = "127.0.0.1"
    port: int = 8700
    client_id: str = "local-client"
    client_secret: str = field(default="local-secret", repr=False)
    api_key: str = field(default="local-api-key", repr=False)
    token_ttl: float = 3600.0
    retry_schedule: tuple[float, ...] = CONTRACT_RETRY_SCHEDULE
    delivery_timeout: float = 10.0
    sender_threads: int = 4
    secret_grace: float = 86400.0
    duplicate: bool = False
    reorder: bool = False
    reorder_window_ms: int = 200
    delay_ms: int = 0
    rate_limit_per_second: int = 0
    tls_ca_file: str | None = None
    dialect: str = "standard"

    @classmethod
    def from_env(cls, environ: Mapping[str, str], overrides: Mapping[str, str] | None = None) -> Settings:
        """Build settings from `EMULATOR_*` values; `overrides` (same names, from flags) win.

        Raises `SettingsError` naming every bad setting at once.
        """
        raw = {k: v for k, v in environ.items() if k.startswith(PREFIX)}
        raw.update({k: v for k, v in (overrides or {}).items() if v is not None})
        values: dict[str, Any] = {}
        errors: list[str] = []
        for name, parse in _PARSERS.items():
            key = PREFIX + name.upper()
            if key not in raw:
                continue
            try:
                values[name] = parse(raw[key].strip())
            except ValueError as exc:
                errors.append(f"{key}: {exc}")
        if errors:
            raise SettingsError("bad setting " + "; ".join(errors))
        return cls(**values)


def _text(value: str) -> str:
    if not value:
        raise ValueError("must not be empty")
    return value


def _number(minimum: float, allow_equal: bool) -> Callable[[str], float]:
    def parse(value: str) -> float:
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"must be a number, got {value!r}") from None
        if not math.isfinite(number) or number < minimum or (number == minimum and not allow_equal):
            relation = ">=" if allow_equal else ">"
            raise ValueError(f"must be a number {relation} {minimum:g}, got {value!r}")
        return number

    return parse


def _integer(minimum: int, maximum: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise ValueError(f"must be a whole number, got {value!r}") from None
        if not minimum <= number <= maximum:
            raise ValueError(f"must be between {minimum} and {maximum}, got {value!r}")
        return number

    return parse


def _schedule(value: str) -> tuple[float, ...]:
    if value == "":
        return ()
    delay = _number(0, allow_equal=True)
    try:
        return tuple(delay(part.strip()) for part in value.split(","))
    except ValueError:
        raise ValueError(f"must be comma-separated seconds >= 0 such as '5,30,120', got {value!r}") from None


def _dialect(value: str) -> str:
    if value.lower() not in ("standard", "svix"):
        raise ValueError(f"must be standard or svix, got {value!r}")
    return value.lower()


def _flag(value: str) -> bool:
    lowered = value.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"must be true or false, got {value!r}")


_PARSERS: dict[str, Callable[[str], Any]] = {
    "host": _text,
    "port": _integer(0, 65535),
    "client_id": _text,
    "client_secret": _text,
    "api_key": _text,
    "token_ttl": _number(0, allow_equal=False),
    "retry_schedule": _schedule,
    "delivery_timeout": _number(0, allow_equal=False),
    "sender_threads": _integer(1, 64),
    "secret_grace": _number(0, allow_equal=True),
    "duplicate": _flag,
    "reorder": _flag,
    "reorder_window_ms": _integer(0, 60_000),
    "delay_ms": _integer(0, 600_000),
    "rate_limit_per_second": _integer(0, 1_000_000),
    "tls_ca_file": _text,
    "dialect": _dialect,
}
