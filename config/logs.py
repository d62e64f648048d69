"""Logging set-up shared by every process: one line per record, timestamps in UTC."""

from __future__ import annotations

import logging
import time

FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def configure_logging(level: str) -> None:
    """Route every logger to stderr in one format; idempotent so tests and gunicorn can call it again."""
    formatter = logging.Formatter(FORMAT, datefmt="%Y-%m-%dT%H:%M:%SZ")
    formatter.converter = time.gmtime
    root = logging.getLogger()
    if not any(getattr(h, "_aiwyn", False) for h in root.handlers):
        handler = logging.StreamHandler()
        handler._aiwyn = True  # type: ignore[attr-defined]
        handler.setFormatter(formatter)
        root.addHandler(handler)
    root.setLevel(level)
    # httpx logs every request at INFO: a backfill's hundreds of pages would drown what matters.
    logging.getLogger("httpx").setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)
