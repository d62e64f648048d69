"""The bare endpoint plus the receiver's one Redis call: what storing a delivery costs, with no check at all.

Compared with ``bench.bare_app`` under the same load (``python -m bench --only store``), it
gives the ceiling of the ingest ratio that the storing round trip alone sets.
"""

from __future__ import annotations

import json

from flask import Flask, Response, request

from config import load_settings
from receiver.app import connect_redis
from receiver.delivery_queue import DeliveryQueue

app = Flask(__name__)
_settings = load_settings()
_queue = DeliveryQueue(_settings, connect_redis(_settings))


@app.get("/healthz")
def healthz() -> tuple[str, int]:
    return "", 200


@app.post("/webhooks/aiwyn")
def receive() -> Response:
    outcome = _queue.enqueue(request.headers["webhook-id"], request.headers["aiwyn-subscription-id"], request.get_data(cache=False))
    return Response(json.dumps({"status": outcome.value}), 202, mimetype="application/json")
