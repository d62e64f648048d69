"""AIWYN_RECEIVER_LOG_FORMAT=json: one JSON object per line with the text line's fields."""

from __future__ import annotations

import io
import json
import logging

from config import from_env
from config.logs import configure_logging


def test_json_lines_carry_the_text_lines_fields() -> None:
    settings = from_env({"AIWYN_RECEIVER_LOG_FORMAT": "json"})
    configure_logging("INFO", settings.log_format)
    [handler] = [h for h in logging.getLogger().handlers if getattr(h, "_aiwyn", False)]
    stream = io.StringIO()
    old, handler.stream = handler.stream, stream
    try:
        logging.getLogger("receiver.webhook").warning("webhook rejected status=%d reason=%r", 401, 'say "no"\nthen')
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("workers.jobs").exception("batch failed")
    finally:
        handler.stream = old
        configure_logging("INFO")
    first, second = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert set(first) == {"time", "level", "logger", "message"} and first["time"].endswith("Z")
    assert (first["level"], first["logger"], first["message"]) == ("WARNING", "receiver.webhook", "webhook rejected status=401 reason='say \"no\"\\nthen'")
    assert second["message"] == "batch failed" and "ValueError: boom" in second["exception"]
