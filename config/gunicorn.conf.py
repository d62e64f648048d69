"""gunicorn settings for the ``web`` process, derived from the service's own settings."""

import logging
import signal
import sys

from config import SettingsError, load_settings
from config.lifecycle import stopping
from config.logs import configure_logging
from config.reachability import check_database, check_redis, summary
from config.redis_exposure import open_redis_warning

try:
    _settings = load_settings()
    # What the app needs, checked here, before gunicorn boots its workers: one line and exit 2,
    # instead of a traceback from every worker process.
    _settings.require_api()
    _settings.require_public_url()  # it tells our subscriptions from the account's others
    _settings.require_secrets_key()
except SettingsError as _exc:
    print(f"web: {_exc}", file=sys.stderr)
    sys.exit(2)
configure_logging(_settings.log_level, _settings.log_format)

bind = f"{_settings.bind_host}:{_settings.port}"
worker_class = "gthread"
workers = _settings.web_workers  # default: two per core, at most 8
threads = _settings.web_threads
# Aiwyn gives up on a delivery after 10 s: a request still running by then is worthless, and a
# stopping worker that waited longer for its in-flight requests would only delay the restart.
timeout = 9
graceful_timeout = 9
keepalive = 5
accesslog = None
# gunicorn's control socket (recent versions) sits at one path per user: another instance or
# user on the host could drive ours through it. We never use it.
control_socket_disable = True
# Refused by gunicorn before the app (414, 431): our longest request line is the callback path
# with a 128-character token, and our longest header, 16 v1a signatures, is about 1.5 KB.
limit_request_line = 1024
limit_request_field_size = 4096


def post_worker_init(worker) -> None:  # noqa: ANN001 - gunicorn's hook
    """On SIGTERM, /readyz turns 503 at once, then gunicorn finishes the requests in flight."""
    graceful_exit = worker.handle_exit

    def exit_gracefully(signum, frame) -> None:  # noqa: ANN001
        stopping.set()
        graceful_exit(signum, frame)

    signal.signal(signal.SIGTERM, exit_gracefully)


def when_ready(server) -> None:  # noqa: ANN001 - gunicorn's hook
    """Say once, at start, whether Redis and the database answer (the web answers 503 until they do)."""
    checks = [check_redis(_settings.redis_url), check_database(_settings.database_url, table=None)]
    level = logging.INFO if all(c.answering for c in checks) else logging.WARNING
    logging.getLogger("web").log(level, "%s", summary(checks))
    exposed = open_redis_warning(_settings.redis_url)
    if exposed:
        logging.getLogger("web").warning("%s", exposed)
