"""Signed deliveries and the wrk load that sends them.

wrk's Lua has no HMAC, so every request is signed beforehand in Python, written to a file,
and the Lua script sends them in order (each wrk thread takes every n-th). Timestamps must
stay within the receiver's tolerance, so the file is made just before each run.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from config.job_contract import deliveries_key, delivery_mac_keys, pack_delivery, seen_key
from receiver.signatures import decode_secret, sign

ENTITY_TYPES = ("client", "contact", "staff", "department", "office")

_LUA = r"""
local path, limit, per_thread = "%(path)s", %(limit)d, %(per_thread)d
local lines, thread_index, threads, sent, answered, share = {}, 0, 1, 0, 0, 0
local counter = 0
function setup(thread)
  thread:set("index", counter)
  counter = counter + 1
end
function init(args)
  thread_index, threads = index, %(threads)d
  if limit > thread_index then share = math.floor((limit - thread_index - 1) / threads) + 1 end
  for line in io.lines(path) do lines[#lines + 1] = line end
end
-- With a limit, a thread stops once its share is surely answered (at most per_thread requests
-- are in flight, so after share + per_thread answers none of its POSTs still is); wrk itself
-- still waits out its duration, idle.
function response()
  answered = answered + 1
  if limit > 0 and answered >= share + per_thread then wrk.thread:stop() end
end
function request()
  local n = thread_index + sent * threads + 1
  sent = sent + 1
  if limit > 0 and n > limit then return wrk.format("GET", "/healthz") end
  local line = lines[((n - 1) %% #lines) + 1]
  local id, ts, sig, sub, body = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
  return wrk.format("POST", "/webhooks/aiwyn", {["Content-Type"] = "application/json", ["webhook-id"] = id,
    ["webhook-timestamp"] = ts, ["webhook-signature"] = sig, ["aiwyn-subscription-id"] = sub}, body)
end
"""


def event(n: int, subscription_id: str, records: int, prefix: str) -> tuple[str, bytes]:
    """A realistic ~1 KB event: several entity types, creates then updates of the same records."""
    record = n % records
    version = n // records + 1
    event_id = f"evt_{prefix}{n:08d}"
    body = {
        "id": event_id,
        "subscriptionId": subscription_id,
        "entityType": ENTITY_TYPES[record % len(ENTITY_TYPES)],
        "operation": "CREATE" if version == 1 else "UPDATE",
        "occurredAt": f"2026-11-23T10:{version // 60 % 60:02d}:{version % 60:02d}.{n % 1000:03d}Z",
        "record": {
            "id": f"rec_{prefix}{record:07d}",
            "type": ENTITY_TYPES[record % len(ENTITY_TYPES)],
            "version": version,
            "active": True,
            "systemRef": {"system": "erp", "id": f"C-{record}"},
            "attributes": {"name": f"Client {record} LLP", "industry": "ind_04", "email": f"office{record}@example.com",
                           "notes": "x" * 700, "revision": version},  # fmt: skip
        },
    }
    return event_id, json.dumps(body).encode()


def write_requests(path: Path, secret: str, subscription_id: str, count: int, records: int, prefix: str) -> list[str]:
    """Sign ``count`` deliveries into ``path`` for the Lua script; returns their event ids."""
    key = decode_secret(secret)
    ids = []
    with path.open("w") as out:
        for n in range(count):
            event_id, body = event(n, subscription_id, records, prefix)
            at = int(time.time())
            out.write(f"{event_id}\t{at}\t{sign(key, event_id, at, body)}\t{subscription_id}\t{body.decode()}\n")
            ids.append(event_id)
    return ids


def push(stack: Any, events: Iterable[tuple[str, bytes]], queue: str) -> None:
    """Queue verified deliveries as the receiver does (seen mark, MACed item), without the HTTP part;
    ``stack``: ``bench.__main__.Stack`` (its Redis, settings and subscription)."""
    mac_key = delivery_mac_keys((stack.env["AIWYN_RECEIVER_SECRETS_KEY"],))[0]
    with stack.redis.pipeline(transaction=False) as pipe:
        for event_id, body in events:
            pipe.set(seen_key(event_id), "1", ex=3600)
            pipe.rpush(deliveries_key(queue), pack_delivery(event_id, stack.subscription_id, body, mac_key))
        pipe.execute()


@dataclass(frozen=True)
class WrkResult:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    requests: int


def wrk_binary() -> str:
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("the benchmark needs wrk: apt-get install -y wrk (Debian) or brew install wrk")
    return found


def run_wrk(url: str, requests_file: Path, seconds: float, *, threads: int = 2, connections: int = 32, limit: int = 0) -> WrkResult:
    """Send the file's requests for ``seconds``, or only the first ``limit`` of them (within ``seconds``)."""
    script = requests_file.with_suffix(".lua")
    script.write_text(_LUA % {"path": requests_file, "limit": limit, "threads": threads, "per_thread": connections // threads})
    argv = [wrk_binary(), f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency", "-s", str(script), url]  # whole seconds only
    output = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=seconds + 60).stdout
    return WrkResult(
        requests_per_second=float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
        p50_ms=_latency(output, "50%"),
        p99_ms=_latency(output, "99%"),
        non_2xx=int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)) else 0,
        requests=int(re.search(r"(\d+) requests in", output).group(1)),
    )


def _latency(output: str, percentile: str) -> float:
    value, unit = re.search(rf"{re.escape(percentile)}\s+([\d.]+)(us|ms|s)\b", output).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
