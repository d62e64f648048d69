"""`python -m emulator [--host H] [--port P] [...]`: serve a local Aiwyn until SIGTERM or SIGINT.

Prints `emulator listening on http://H:P` (flushed) once it accepts connections. Every flag
overrides the `EMULATOR_*` variable of the same name (see `emulator/settings.py`).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

from .server import EmulatorServer
from .settings import PREFIX, Settings, SettingsError

# flag -> help; the setting is PREFIX + the flag in upper snake case.
_VALUE_FLAGS = {
    "host": "address to listen on (default 127.0.0.1)",
    "port": "port to listen on, 0 for a free one (default 8700)",
    "client-id": "client id accepted by the token endpoint (default local-client)",
    "client-secret": "client secret accepted by the token endpoint (default local-secret)",
    "api-key": "API key accepted by the token endpoint (default local-api-key)",
    "token-ttl": "seconds a token lives (default 3600)",
    "retry-schedule": "comma-separated seconds between attempts (default 5,30,120,600,3600,21600,86400)",
    "delivery-timeout": "seconds to wait for a receiver's answer (default 10)",
    "sender-threads": "delivery threads (default 4)",
    "secret-grace": "seconds an old secret keeps signing after a rotation (default 86400)",
    "reorder-window-ms": "window of the reorder fault in ms (default 200)",
    "delay-ms": "fault: wait this many ms before each attempt (default 0)",
    "rate-limit-per-second": "fault: answer 429 to /api/v1 calls above this many a second (default 0 = off)",
    "dialect": "delivery headers: standard (webhook-*) or svix (svix-*) (default standard)",
    "tls-ca-file": "PEM file of the CA (or self-signed certificate) to trust for https deliveries (default: the system's CAs)",
}
_SWITCHES = {
    "duplicate": "fault: send every event twice",
    "reorder": "fault: send each window of new events in reverse order",
}


def _setting_name(flag: str) -> str:
    return PREFIX + flag.upper().replace("-", "_")


def parse_args(argv: list[str] | None) -> dict[str, str]:
    """The given flags as `EMULATOR_*` overrides (strings, parsed later with the environment)."""
    parser = argparse.ArgumentParser(prog="python -m emulator", description="A local Aiwyn API.")
    for flag, help_text in _VALUE_FLAGS.items():
        parser.add_argument(f"--{flag}", help=help_text)
    for flag, help_text in _SWITCHES.items():
        parser.add_argument(f"--{flag}", action="store_const", const="true", help=help_text)
    args = vars(parser.parse_args(argv))
    return {_setting_name(k.replace("_", "-")): v for k, v in args.items() if v is not None}


def main(argv: list[str] | None = None) -> int:
    """Run the emulator; the process's exit status."""
    overrides = parse_args(argv)
    try:
        settings = Settings.from_env(os.environ, overrides)
    except SettingsError as exc:
        print(f"emulator: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server = EmulatorServer(settings)
    try:
        url = server.start()
    except OSError as exc:
        print(f"emulator: cannot listen on {settings.host}:{settings.port}: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    print(f"emulator listening on {url}", flush=True)
    while not stop.wait(0.5):
        pass
    server.stop()
    logging.getLogger("emulator").info("emulator stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
