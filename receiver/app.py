"""The Flask app factory: everything the web process needs, built once from the settings."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import redis
import sqlalchemy
from flask import Flask, current_app, jsonify, request
from flask.typing import ResponseReturnValue
from prometheus_client import CollectorRegistry
from werkzeug.middleware.proxy_fix import ProxyFix

from aiwyn_api.client import AiwynClient
from config import Settings, load_settings
from config.logs import configure_logging
from config.redis_connection import connect
from config.wire import DEFAULT_WIRE, Wire, wire_for
from receiver.delivery_queue import DeliveryQueue
from receiver.metrics import registry_for
from receiver.redis_durability import durability_warnings
from receiver.request_counts import RequestCounts
from receiver.secret_store import SecretStore

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    """What the request handlers share in one web process."""

    settings: Settings
    redis: redis.Redis
    secrets: SecretStore
    queue: DeliveryQueue
    database: sqlalchemy.Engine
    counts: RequestCounts
    metrics: CollectorRegistry
    wire: Wire = DEFAULT_WIRE


def current_runtime() -> Runtime:
    """The runtime of the app handling the current request."""
    return current_app.extensions["aiwyn"]


def connect_redis(settings: Settings) -> redis.Redis:
    """A Redis client that fails fast: a request must answer 503 quickly, not hang."""
    return connect(settings.redis_url, socket_connect_timeout=2, socket_timeout=2)


def _redis_unavailable(exc: redis.RedisError) -> ResponseReturnValue:
    """A route that meets a Redis error it does not handle itself (``/status`` during an outage or a
    failover) answers 503, never an unhandled 500; the endpoint answers its own 503s."""
    log.warning("%s answered 503: Redis unavailable (%s)", request.endpoint, type(exc).__name__)
    return jsonify(error="redis unavailable"), 503, {"Retry-After": "30"}


def create_app(settings: Settings | None = None) -> Flask:
    """Build the web app; tests pass their own settings, gunicorn lets them come from the environment."""
    settings = settings or load_settings()
    configure_logging(settings.log_level, settings.log_format)
    settings.require_api()
    app = Flask(__name__)
    # Werkzeug refuses a larger body with 413 while reading it, chunked or not.
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    connection = connect_redis(settings)
    runtime = Runtime(
        settings=settings,
        redis=connection,
        secrets=SecretStore.for_settings(
            settings,
            connection,
            # Called from a request only when a secret is missing (throttled): fail fast, no retries.
            lambda: AiwynClient(replace(settings, http_retries=0, http_timeout=min(settings.http_timeout, 3.0))),
        ),
        queue=DeliveryQueue(settings, connection),
        database=(database := sqlalchemy.create_engine(settings.database_url, pool_pre_ping=True)),
        counts=RequestCounts(connection, settings.queue_name),
        metrics=registry_for(settings, connection, database),
        wire=wire_for(settings),
    )
    app.extensions["aiwyn"] = runtime
    try:
        runtime.secrets.reload_from_redis()
        for warning in durability_warnings(connection):
            log.warning("%s", warning)
    except redis.RedisError as exc:
        log.warning("secrets not loaded at start, Redis unreachable: %s", type(exc).__name__)

    from receiver.health import health
    from receiver.metrics import observe
    from receiver.status import status
    from receiver.webhook import webhooks
    from receiver.webhook_route import WebhookRoute

    # The webhook's POSTs are answered in front of Flask (the same handler, less per request).
    app.wsgi_app = WebhookRoute(app.wsgi_app, runtime)  # type: ignore[method-assign]
    if settings.trusted_proxy_hops:
        # Only as many X-Forwarded-* hops as there are proxies of ours: the client address in
        # the log lines is then the one the outermost proxy saw, and nobody can forge it.
        hops = settings.trusted_proxy_hops
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]
    app.register_error_handler(redis.RedisError, _redis_unavailable)
    app.register_blueprint(webhooks)
    app.register_blueprint(health)
    app.register_blueprint(observe)
    app.register_blueprint(status)
    return app
