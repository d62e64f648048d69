"""The backfill command's progress line (records done, rate, time left) and its one-line summary."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from workers.sync.backfill import Progress

REDRAW_SECONDS = 0.5  # on a terminal; elsewhere (a log file) a line every few seconds
LOG_LINE_SECONDS = 5.0


class ProgressLine:
    """Writes ``client: 12,000 of about 20,000 records, 4,100/s, 2 s left`` to stderr."""

    def __init__(self, stream: TextIO = sys.stderr) -> None:
        self._stream = stream
        self._tty = stream.isatty()
        self._started = time.monotonic()
        self._type_started = self._started
        self._type_base = 0
        self._last_drawn = 0.0
        self.total = 0
        self._done_by_type: dict[str, int] = {}

    def __call__(self, report: Progress) -> None:
        now = time.monotonic()
        if report.entity_type not in self._done_by_type:
            self._type_started, self._type_base = now, report.done
        self._done_by_type[report.entity_type] = report.done
        self.total = sum(self._done_by_type.values())
        if report.finished or now - self._last_drawn >= (REDRAW_SECONDS if self._tty else LOG_LINE_SECONDS):
            self._last_drawn = now
            self._draw(report, now)

    def _draw(self, report: Progress, now: float) -> None:
        elapsed = max(now - self._type_started, 1e-6)
        rate = (report.done - self._type_base) / elapsed
        line = f"{report.entity_type}: {report.done:,}"
        if report.finished:
            line += " records, complete"
        else:
            line += f" of about {report.estimate:,} records" if report.estimate else " records"
            line += f", {rate:,.0f}/s"
            if report.estimate and rate > 0:
                line += f", {max(report.estimate - report.done, 0) / rate:,.0f} s left"
        if self._tty:
            self._stream.write("\r\033[K" + line + ("\n" if report.finished else ""))
        else:
            self._stream.write(line + "\n")
        self._stream.flush()

    def summary(self, types: int) -> str:
        elapsed = time.monotonic() - self._started
        return f"backfill complete: {self.total:,} records of {types} type(s) in {elapsed:,.1f} s ({self.total / max(elapsed, 1e-6):,.0f}/s)"
