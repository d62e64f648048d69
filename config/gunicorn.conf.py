"""gunicorn settings for the ``web`` process, derived from the service's own settings."""

from config import load_settings
from config.logs import configure_logging

_settings = load_settings()
configure_logging(_settings.log_level)

bind = f"{_settings.bind_host}:{_settings.port}"
worker_class = "gthread"
workers = _settings.web_workers
threads = _settings.web_threads
# Aiwyn gives up on a delivery after 10 s; a request still running by then is worthless.
timeout = 10
graceful_timeout = 20
keepalive = 5
accesslog = None
