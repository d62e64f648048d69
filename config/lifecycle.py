"""Set when the web process has been asked to stop: readiness then answers 503 (a load balancer
stops sending new deliveries) while gunicorn finishes the requests in flight."""

from __future__ import annotations

import threading

stopping = threading.Event()
