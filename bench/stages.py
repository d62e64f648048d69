"""``python -m bench.stages``: what one delivery costs, stage by stage, in this process (µs of CPU).

Throughput on a shared machine moves with the neighbours; the best of several repeats of a
stage does not, much. Each stage of the webhook route is timed alone (the same functions the
receiver calls, a ~1.1 KB signed event, a private Redis on loopback), then the whole route
in-process through WSGI, beside the bare Flask endpoint, single-threaded and with 4 threads
(a gunicorn worker's count). What the
in-process figures leave out is gunicorn's own HTTP handling, the same for both endpoints:
``python -m bench --only ingest`` measures that under load.
"""

from __future__ import annotations

import base64
import io
import json
import sys
import tempfile
import threading
import time
import timeit
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.bare_app import app as bare_app
from bench.load import event
from config import Settings
from config.job_contract import delivery_mac_keys, pack_delivery
from devstack.services import start_redis
from receiver import create_app
from receiver.signatures import check_headers, check_signature, decode_secret, sign

SUBSCRIPTION = "sub_bench"
SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
REPEATS = 7


def best_us(stage: Callable[[], object], number: int) -> float:
    """The best of ``REPEATS`` timings of ``number`` calls, per call, in µs of process CPU."""
    timer = timeit.Timer(stage, timer=time.process_time)
    return min(timer.repeat(REPEATS, number)) / number * 1_000_000


def environ_for(n: int, prefix: str, key: bytes) -> tuple[dict[str, Any], bytes]:
    event_id, body = event(n, SUBSCRIPTION, 20_000, prefix)
    at = int(time.time())
    environ = {
        "REQUEST_METHOD": "POST", "PATH_INFO": "/webhooks/aiwyn", "SCRIPT_NAME": "", "QUERY_STRING": "", "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000", "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1", "wsgi.url_scheme": "http",
        "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": str(len(body)), "HTTP_HOST": "127.0.0.1:8000",
        "HTTP_WEBHOOK_ID": event_id, "HTTP_WEBHOOK_TIMESTAMP": str(at), "HTTP_WEBHOOK_SIGNATURE": sign(key, event_id, at, body),
        "HTTP_AIWYN_SUBSCRIPTION_ID": SUBSCRIPTION, "wsgi.errors": sys.stderr, "wsgi.multithread": True, "wsgi.multiprocess": True,
        "wsgi.run_once": False, "wsgi.version": (1, 0),
    }  # fmt: skip
    return environ, body


def serve_all(app: Callable[..., Any], requests: list[tuple[dict[str, Any], bytes]], threads: int) -> float:
    """µs of process CPU per request, serving ``requests`` through the WSGI ``app`` from ``threads`` threads."""

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        if not status.startswith("2"):
            raise RuntimeError(f"answered {status}")

    def serve(part: list[tuple[dict[str, Any], bytes]]) -> None:
        for environ, body in part:
            b"".join(app({**environ, "wsgi.input": io.BytesIO(body)}, start_response))

    started = time.process_time()
    workers = [threading.Thread(target=serve, args=(requests[i::threads],)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return (time.process_time() - started) / len(requests) * 1_000_000


def measure(redis_url: str, count: int) -> dict[str, float]:
    settings = replace(Settings(), aiwyn_base_url="http://127.0.0.1:9", aiwyn_client_id="bench", aiwyn_client_secret="bench",
                       public_url="http://127.0.0.1:9", allow_http=True, redis_url=redis_url, database_url="sqlite://",
                       secrets_key=("QmVuY2hCZW5jaEJlbmNoQmVuY2hCZW5jaEJlbmNoQmU=",), log_level="WARNING")  # fmt: skip
    app = create_app(settings)
    runtime = app.extensions["aiwyn"]
    runtime.secrets.store(SUBSCRIPTION, [{"secret": SECRET, "algorithm": "v1", "expiresAt": None}])
    key = decode_secret(SECRET)
    environ, body = environ_for(0, "s", key)
    headers = {name[5:].lower().replace("_", "-"): value for name, value in environ.items() if name.startswith("HTTP_")}
    signed = check_headers(headers, wire=runtime.wire)
    mac_key = delivery_mac_keys(settings.require_secrets_key())[0]
    counter = iter(range(10**9))
    figures = {
        "headers: presence, timestamp, signature parse": best_us(lambda: check_headers(headers, wire=runtime.wire), 2000),
        "HMAC-SHA256 of the signed content": best_us(lambda: check_signature(signed, body, [SECRET]), 2000),
        "JSON parse of the body": best_us(lambda: json.loads(body), 2000),
        "delivery MAC and packing": best_us(lambda: pack_delivery(signed.event_id, SUBSCRIPTION, body, mac_key), 2000),
        "storing script, one round trip (client side)": best_us(lambda: runtime.queue.enqueue(f"evt_s{next(counter)}", SUBSCRIPTION, body), 500),
    }
    for threads in (1, 4):
        runs = []
        for repeat in range(3):
            runs.append(serve_all(app, [environ_for(n, f"r{threads}{repeat}", key) for n in range(count)], threads))
            runs.append(-serve_all(bare_app, [environ_for(n, f"b{threads}{repeat}", key) for n in range(count)], threads))
        figures[f"receiver, whole route in-process, {threads} thread(s)"] = min(r for r in runs if r > 0)
        figures[f"bare Flask endpoint in-process, {threads} thread(s)"] = min(-r for r in runs if r < 0)
    info = runtime.redis.info("commandstats")
    figures["Redis: the storing script inside Redis"] = info.get("cmdstat_evalsha", {}).get("usec_per_call", 0.0)
    return figures


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="aiwyn-stages-") as tmp:
        process, url = start_redis(Path(tmp))
        try:
            figures = measure(url, 2000)
        finally:
            process.stop()
    width = max(map(len, figures))
    for name, value in figures.items():
        print(f"{name:{width}}  {value:7.1f} µs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
