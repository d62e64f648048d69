"""Serving an emulator app with werkzeug's threaded server on a background thread.

Used by `python -m emulator` and by tests, which pass port 0 and read `base_url`.
"""

from __future__ import annotations

import socket
import threading

from flask import Flask
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from .app import create_app
from .runtime import Runtime
from .settings import Settings


class _PlainRequestHandler(WSGIRequestHandler):
    """Logs each request as plain text (werkzeug adds terminal colours, noise in log files)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        self.log("info", '"%s" %s %s', self.requestline, getattr(code, "value", code), size)


class EmulatorServer:
    """An emulator listening on `settings.host:settings.port` (0 = a free port) until `stop()`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app: Flask | None = None
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def runtime(self) -> Runtime:
        """State, tokens and sender of the running app."""
        assert self.app is not None, "EmulatorServer.start() was not called"
        return self.app.extensions["emulator"]

    @property
    def base_url(self) -> str:
        """`http://host:port` the emulator answers on."""
        assert self._server is not None, "EmulatorServer.start() was not called"
        host = self.settings.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self._server.port}"

    def start(self) -> str:
        """Bind, start serving and delivering; returns the base URL. Raises OSError if it cannot bind."""
        host, port = self.settings.host, self.settings.port
        # Bound here rather than by werkzeug, which prints and exits on a bind error.
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listener = socket.create_server((host, port), family=family, backlog=128)
        try:
            app = create_app(self.settings, start_sender=False)
            self._server = make_server(host, port, app, threaded=True, request_handler=_PlainRequestHandler, fd=listener.fileno())
        finally:
            listener.close()  # werkzeug serves a duplicate of it
        self.app = app
        self.runtime.sender.start()
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="emulator-http", daemon=True
        )
        self._thread.start()
        return self.base_url

    def stop(self) -> None:
        """Stop accepting requests, then stop the sender."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        if self.app is not None:
            self.runtime.sender.stop()

    def __enter__(self) -> EmulatorServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
