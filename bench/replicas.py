"""``python -m bench --min-replicas N``: what ``AIWYN_RECEIVER_REDIS_MIN_REPLICAS`` costs in ingest.

The real endpoint under wrk, as ``bench_ingest`` loads it, against a Sentinel set on loopback (a
primary, N replicas, three sentinels; ``REDIS_URL=redis+sentinel://...``), with the setting at 0
and at N in alternating runs (the order flips each run), the web process started afresh for each.
The cost is the median of the runs' ratios (N over 0). Before it, the endpoint's Redis step
alone (``DeliveryQueue.enqueue``, one call at a time, alternating blocks): the time WAIT adds to
a delivery. Load, service, primary and replicas share this machine, so a replica's
acknowledgement costs CPU here that it would not on its own host.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.load import event, run_wrk, write_requests
from config.job_contract import deliveries_key
from devstack.databases import throwaway_database
from devstack.sentinels import sentinel_set
from devstack.services import ROOT


def bench_min_replicas(stack: Any, work: Path, replicas: int, seconds: float, runs: int) -> dict[str, Any]:
    """Alternating runs of the endpoint with the setting at 0 and at ``replicas``; medians and the ratio.

    ``stack``: ``bench.__main__.Stack``, its web processes started per run (not kept)."""
    rows: dict[int, list[dict[str, float]]] = {0: [], replicas: []}
    for run in range(runs):
        for setting in (0, replicas) if run % 2 == 0 else (replicas, 0):
            stack.reset()
            requests = work / f"replicas-{run}-{setting}.tsv"
            write_requests(requests, stack.secret, stack.subscription_id, int(seconds * 9000), 20_000, f"r{run}s{setting}")
            with stack.web(AIWYN_RECEIVER_REDIS_MIN_REPLICAS=str(setting)) as url:
                if seconds >= 5:  # not in the smoke run
                    run_wrk(url, requests, 1)  # warm-up: imports, connections, first secrets load
                stack.redis.delete(deliveries_key(stack.queue))
                result = run_wrk(url, requests, seconds)
            rows[setting].append({"rps": result.requests_per_second, "p50_ms": result.p50_ms, "p99_ms": result.p99_ms, "non_2xx": result.non_2xx})
            print(f"run {run} MIN_REPLICAS={setting}: {rows[setting][-1]}", file=sys.stderr, flush=True)
    summary: dict[str, Any] = {str(setting): {k: statistics.median(r[k] for r in found) for k in found[0]} for setting, found in rows.items()}
    ratios = [with_wait["rps"] / without["rps"] for without, with_wait in zip(rows[0], rows[replicas], strict=True)]
    summary |= {"ratio": statistics.median(ratios), "ratios": ratios, "runs": rows}
    return summary


def bench_store(stack: Any, replicas: int, blocks: int, per_block: int) -> dict[str, Any]:
    """The endpoint's Redis step alone, in this process, one call at a time (``DeliveryQueue.enqueue``:
    the storing script, with WAIT behind it or not), in alternating blocks: the time WAIT adds to a
    delivery, less disturbed by a busy machine than the HTTP figures."""
    from dataclasses import replace

    from config.redis_connection import connect
    from config.settings import from_env
    from receiver.delivery_queue import DeliveryQueue

    base = from_env(stack.env)
    connection = connect(stack.env["REDIS_URL"], socket_connect_timeout=2, socket_timeout=2)
    queues = {setting: DeliveryQueue(replace(base, redis_min_replicas=setting), connection) for setting in (0, replicas)}
    times: dict[int, list[float]] = {0: [], replicas: []}
    n = 0
    for block in range(blocks):
        for setting in (0, replicas) if block % 2 == 0 else (replicas, 0):
            for _ in range(per_block):
                event_id, body = event(n, stack.subscription_id, 20_000, "s")
                n += 1
                started = time.perf_counter()
                queues[setting].enqueue(event_id, stack.subscription_id, body)
                times[setting].append((time.perf_counter() - started) * 1e6)
        connection.delete(deliveries_key(stack.queue))
    connection.close()
    return {str(setting): {"p50_us": statistics.median(found), "p99_us": sorted(found)[int(len(found) * 0.99) - 1], "calls": len(found)} for setting, found in times.items()}


def main_replicas(make_stack: Callable[[Path, str, str], Any], replicas: int, runs: int, seconds: float, json_path: Path | None) -> int:
    """Run the comparison on a fresh Sentinel set and SQLite mirror; ``make_stack(directory, database URL, REDIS_URL)``."""
    from workers.migrate import upgrade

    results: dict[str, Any] = {"at": datetime.now(UTC).isoformat(timespec="seconds"), "replicas": replicas, "runs": runs, "seconds": seconds}
    # The smoke run (1 s) has one sentinel: nothing fails over, and it stays under 10 s.
    sentinels = 1 if seconds < 5 else 3
    with tempfile.TemporaryDirectory(prefix="aiwyn-bench-replicas-") as tmp, sentinel_set(Path(tmp) / "sentinels", replicas=replicas, sentinels=sentinels) as group:
        work = Path(tmp)
        with throwaway_database("sqlite", work / "sqlite") as url:
            upgrade(url)
            stack = make_stack(work / "stack", url, group.url)
            try:
                stack.reset()
                results["store"] = bench_store(stack, replicas, 2 if seconds < 5 else 20, 50 if seconds < 5 else 500)
                results["ingest"] = bench_min_replicas(stack, work, replicas, seconds, runs)
            finally:
                stack.stop()
    store = results["store"]
    print(f"store step alone, one at a time: MIN_REPLICAS=0 p50 {store['0']['p50_us']:.0f} µs, p99 {store['0']['p99_us']:.0f} µs;"
          f" MIN_REPLICAS={replicas} p50 {store[str(replicas)]['p50_us']:.0f} µs, p99 {store[str(replicas)]['p99_us']:.0f} µs")
    ingest = results["ingest"]
    for setting in ("0", str(replicas)):
        figures = ingest[setting]
        print(f"ingest, MIN_REPLICAS={setting}: {figures['rps']:,.0f} req/s, p50 {figures['p50_ms']:.1f} ms, p99 {figures['p99_ms']:.1f} ms, non-2xx {figures['non_2xx']:.0f}")
    print(f"MIN_REPLICAS={replicas} / 0: {ingest['ratio']:.0%} (median of {runs} alternating pairs: {', '.join(f'{r:.0%}' for r in ingest['ratios'])})")
    target = json_path or ROOT / "bench" / "results" / f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-replicas.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten to {target}")
    return 0
