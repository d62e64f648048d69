"""Logging set-up shared by every process: one line per record, timestamps in UTC; text or JSON lines."""

from __future__ import annotations

import json
import logging
import time

FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
DATE_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


class JsonFormatter(logging.Formatter):
    """One JSON object per line with the text line's fields (``time``, ``level``, ``logger``, ``message``),
    and ``exception`` when there is one: a log pipeline needs no pattern to parse it."""

    converter = time.gmtime

    def format(self, record: logging.LogRecord) -> str:
        line = {"time": self.formatTime(record, DATE_FORMAT), "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
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
        root.addHandler(handler)
        ours = [handler]
    for handler in ours:
        handler.setFormatter(formatter)
    root.setLevel(level)
    # httpx logs every request at INFO: a backfill's hundreds of pages would drown what matters.
    logging.getLogger("httpx").setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)
