"""Liveness and readiness: ``/healthz`` says the process answers, ``/readyz`` that it can work."""

from __future__ import annotations

import redis
import sqlalchemy
from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from config.lifecycle import stopping
from config.redis_connection import online_replicas
from receiver.app import current_runtime

health = Blueprint("health", __name__)


@health.get("/healthz")
def healthz() -> ResponseReturnValue:
    return jsonify(status="ok")


@health.get("/readyz")
def readyz() -> ResponseReturnValue:
    """Ready when Redis and the database answer, the signing secrets are loaded and, with
    ``AIWYN_RECEIVER_REDIS_MIN_REPLICAS``, that many replicas are in step with the primary."""
    runtime = current_runtime()
    if stopping.is_set():
        return jsonify(status="stopping", checks={}), 503
    checks: dict[str, str] = {}
    try:
        runtime.redis.ping()
        checks["redis"] = "ok"
        if not runtime.secrets.loaded:
            runtime.secrets.reload_from_redis()
        checks["secrets"] = "ok" if runtime.secrets.loaded else "not loaded"
        if runtime.settings.redis_min_replicas:
            checks["replicas"] = _replicas(runtime.redis, runtime.settings.redis_min_replicas)
    except redis.RedisError as exc:
        checks["redis"] = f"unreachable ({type(exc).__name__})"
        checks.setdefault("secrets", "unknown")
    try:
        with runtime.database.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT 1"))
        checks["database"] = "ok"
    except sqlalchemy.exc.SQLAlchemyError as exc:
        checks["database"] = f"unreachable ({type(exc).__name__})"
    ready = all(value == "ok" for value in checks.values())
    return jsonify(status="ready" if ready else "not ready", checks=checks), 200 if ready else 503


def _replicas(connection: redis.Redis, wanted: int) -> str:
    """"ok", or how many replicas are online: without enough, every delivery is answered 503."""
    online = online_replicas(connection)
    return "ok" if online >= wanted else f"{online} online, {wanted} required"
