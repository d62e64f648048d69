"""Set when the worker process is asked to stop (SIGTERM, Ctrl-C): jobs end early and hand over.

RQ's warm shutdown waits for the job in hand; a drain job then stops after its current batch
and a handler job after its current event, queueing what remains, so a deploy's SIGTERM is
answered in seconds and nothing claimed is left behind.
"""

from __future__ import annotations

import threading

stopping = threading.Event()
