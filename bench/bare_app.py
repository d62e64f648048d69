"""The yardstick: an endpoint that does nothing, served by gunicorn with the service's own settings."""

from __future__ import annotations

from flask import Flask

app = Flask(__name__)


@app.get("/healthz")
def healthz() -> tuple[str, int]:
    return "", 200


@app.post("/webhooks/aiwyn")
def receive() -> tuple[str, int]:
    return "", 204
