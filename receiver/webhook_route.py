"""``POST /webhooks/aiwyn[/<token>]`` served in front of Flask: the hot route without Flask's per-request machinery.

Flask's request context, routing, signals and response object cost the receiver about a fifth of
its CPU per delivery (measured in-process and under gunicorn, see the README's Performance
section). This WSGI layer answers the webhook's POSTs itself through ``receiver.webhook.handle``,
the same function the Flask view calls, so statuses, reasons, counts, logs and limits are the
same; every other request (other paths, other methods: 405 stays Flask's) goes to Flask.
It sits inside ``ProxyFix``, so the client address it logs is the one the trusted proxy saw.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.http import HTTP_STATUS_CODES

from receiver.app import Runtime
from receiver.incoming import Incoming
from receiver.webhook import WEBHOOK_PATH, handle

log = logging.getLogger("receiver.webhook")

_PREFIX = WEBHOOK_PATH + "/"
_STATUS_LINES = {code: f"{code} {reason.upper()}" for code, reason in HTTP_STATUS_CODES.items()}
_FAILED = b'{"error": "internal server error"}'

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def _token(path: str) -> tuple[bool, str | None]:
    """(is this the webhook's path, the callback token in it); a token is one non-empty segment, as Flask's route has it."""
    if path == WEBHOOK_PATH:
        return True, None
    if path.startswith(_PREFIX):
        token = path[len(_PREFIX) :]
        if token and "/" not in token:
            return True, token
    return False, None


class WebhookRoute:
    """WSGI middleware: the webhook's POSTs answered here, everything else passed to ``app``."""

    def __init__(self, app: WSGIApp, runtime: Runtime) -> None:
        self._app = app
        self._runtime = runtime

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") != "POST":
            return self._app(environ, start_response)
        ours, token = _token(environ.get("PATH_INFO", ""))
        if not ours:
            return self._app(environ, start_response)
        try:
            answer = handle(self._runtime, Incoming(environ), token)
        except Exception:
            # As Flask answers an unexpected error: logged (the filter hides a token in the path), 500.
            log.exception("Exception on %s [POST]", environ.get("PATH_INFO", ""))
            start_response(_STATUS_LINES[500], [("Content-Type", "application/json"), ("Content-Length", str(len(_FAILED)))])
            return [_FAILED]
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(answer.body))), *answer.headers]
        start_response(_STATUS_LINES[answer.status], headers)
        return [answer.body]
