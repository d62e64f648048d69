"""Logging set-up shared by every process: one line per record, timestamps in UTC, text or JSON, no callback token."""

from __future__ import annotations

import json
import logging
import re
import time

FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
DATE_FORMAT = "%Y-%m-%dT%H:%M:%SZ"

# The callback token (AIWYN_RECEIVER_CALLBACK_TOKEN) is a secret path segment: whatever logs a
# path or the callback URL (registration's plan, Flask's "Exception on <path>", gunicorn's
# "Error handling request <path>") shows it as [token].
_TOKEN_IN_PATH = re.compile(r"(/webhooks/aiwyn/)[^\s'\"?#/\\]+")


def redact(text: str) -> str:
    """``text`` with every ``/webhooks/aiwyn/<token>`` written ``/webhooks/aiwyn/[token]``."""
    return _TOKEN_IN_PATH.sub(r"\1[token]", text) if "/webhooks/aiwyn/" in text else text


class RedactingFilter(logging.Filter):
    """Rewrites a record's message and traceback without the callback token, before any handler formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line with the text line's fields (``time``, ``level``, ``logger``, ``message``),
    and ``exception`` when there is one: a log pipeline needs no pattern to parse it."""

    converter = time.gmtime

    def format(self, record: logging.LogRecord) -> str:
        line = {"time": self.formatTime(record, DATE_FORMAT), "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            line["exception"] = record.exc_text or self.formatException(record.exc_info)  # exc_text: redacted by the filter
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False)


def configure_logging(level: str, log_format: str = "text") -> None:
    """Route every logger to stderr in one format; idempotent so tests and gunicorn can call it again."""
    if log_format == "json":
        formatter: logging.Formatter = JsonFormatter()
    else:
        formatter = logging.Formatter(FORMAT, datefmt=DATE_FORMAT)
        formatter.converter = time.gmtime
    root = logging.getLogger()
    ours = [h for h in root.handlers if getattr(h, "_aiwyn", False)]
    if not ours:
        handler = logging.StreamHandler()
        handler._aiwyn = True  # type: ignore[attr-defined]
        handler.addFilter(RedactingFilter())
        root.addHandler(handler)
        ours = [handler]
    for handler in ours:
        handler.setFormatter(formatter)
    root.setLevel(level)
    # gunicorn's own loggers do not propagate to ours: they get the filter themselves.
    for name in ("gunicorn.error", "gunicorn.access"):
        gunicorn_logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in gunicorn_logger.filters):
            gunicorn_logger.addFilter(RedactingFilter())
    # httpx logs every request at INFO: a backfill's hundreds of pages would drown what matters.
    logging.getLogger("httpx").setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)
