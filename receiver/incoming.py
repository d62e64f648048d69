"""A delivery's request as the endpoint reads it, straight from the WSGI environ.

Flask's request object and its context cost about as much per request as the endpoint's own
checks (a profile of the receiver under load, see the README's Performance section); the
webhook route reads only a few headers, the length, the type and the body, so it reads them
here, with Werkzeug's own functions wherever a rule matters (body limits, chunked bodies), so
the answers are the ones the Flask route gave.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from werkzeug.datastructures import EnvironHeaders
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.http import parse_options_header
from werkzeug.wsgi import get_content_length, get_input_stream


@lru_cache(maxsize=64)
def _environ_key(name: str) -> str:
    """Where WSGI keeps a header: ``webhook-id`` → ``HTTP_WEBHOOK_ID`` (as Werkzeug's ``EnvironHeaders`` reads it)."""
    key = name.upper().replace("-", "_")
    return key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{key}"


class HeaderView:
    """Case-insensitive ``get`` over the environ's headers, without building a headers object."""

    __slots__ = ("_environ",)

    def __init__(self, environ: dict[str, Any]) -> None:
        self._environ = environ

    def get(self, name: str, default: str | None = None) -> str | None:
        return self._environ.get(_environ_key(name), default)


class Incoming:
    """The parts of one request the webhook endpoint needs; ``subscription`` is set once it is known."""

    __slots__ = ("environ", "headers", "subscription")

    def __init__(self, environ: dict[str, Any]) -> None:
        self.environ = environ
        self.headers = HeaderView(environ)
        self.subscription = ""

    @property
    def content_length(self) -> int | None:
        return get_content_length(self.environ)

    @property
    def mimetype(self) -> str:
        raw = self.environ.get("CONTENT_TYPE", "")
        return raw if raw == "application/json" else parse_options_header(raw)[0].lower()

    @property
    def remote_addr(self) -> str | None:
        return self.environ.get("REMOTE_ADDR")

    def all_headers(self) -> EnvironHeaders:
        """Every header (for a refusal's record of header names): Werkzeug's view, off the hot path."""
        return EnvironHeaders(self.environ)

    def body(self, limit: int) -> bytes:
        """The whole body; ``RequestEntityTooLarge`` past ``limit`` (a declared length, or a chunked body as it is read)."""
        if self.environ.get("wsgi.input_terminated"):
            # The server ends the stream (gunicorn does, chunked or not): Werkzeug's reader would
            # stop at the limit without a word, and a cut body then fails its signature (401), so
            # one byte more is read to tell "too large" (413) from "just fits".
            stream, parts, size = self.environ["wsgi.input"], [], 0
            while size <= limit and (part := stream.read(limit + 1 - size)):
                parts.append(part)
                size += len(part)
            if size > limit:
                raise RequestEntityTooLarge()
            return b"".join(parts)
        return get_input_stream(self.environ, max_content_length=limit).read()
