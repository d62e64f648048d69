"""Ingest against the bare endpoint: alternating pairs of wrk runs, throughput and CPU per request.

Throughput on a shared machine moves with whatever else runs, so each pair loads the bare
endpoint and the receiver one right after the other (in alternating order, so a drift in the
background load favours neither) and the ratio is the median of the pairs' ratios. Beside it,
a figure that contention does not move: the CPU time the gunicorn processes, Redis and wrk
spend per request (``/proc/<pid>/stat`` and Redis's ``INFO cpu``). When the machine is CPU
bound, which it is here (load, service and Redis share the cores), the throughput ratio tends
to the inverse ratio of those costs.
"""

from __future__ import annotations

import os
import resource
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import redis

from bench.load import WrkResult, run_wrk, write_requests

_TICK = os.sysconf("SC_CLK_TCK")


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU of every live process in the process group (a gunicorn master and its workers)."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        # After the command: state, ppid, pgrp (index 2), ..., utime (11), stime (12).
        if int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12])
    return total / _TICK


def redis_cpu_seconds(connection: redis.Redis) -> float:
    info = connection.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def children_cpu_seconds() -> float:
    """CPU of this process's reaped children: wrk, once ``run_wrk`` returns."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass(frozen=True)
class Run:
    """One wrk run against one endpoint, with the CPU each part spent per request (µs)."""

    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    web_us: float
    redis_us: float
    wrk_us: float

    @property
    def total_us(self) -> float:
        return self.web_us + self.redis_us + self.wrk_us


def measured_run(url: str, requests_file: Path, seconds: float, web_pgid: int, connection: redis.Redis) -> tuple[WrkResult, Run]:
    """``run_wrk`` with the CPU of the web processes, Redis and wrk read around it."""
    web, db, load = group_cpu_seconds(web_pgid), redis_cpu_seconds(connection), children_cpu_seconds()
    result = run_wrk(url, requests_file, seconds)
    web, db, load = group_cpu_seconds(web_pgid) - web, redis_cpu_seconds(connection) - db, children_cpu_seconds() - load
    per = 1_000_000 / max(result.requests, 1)
    return result, Run(result.requests_per_second, result.p50_ms, result.p99_ms, result.requests, web * per, db * per, load * per)


@dataclass(frozen=True)
class Endpoint:
    """A running web process to load: its URL and process group."""

    name: str
    url: str
    pgid: int


def compare(
    bare: Endpoint,
    ingest: Endpoint,
    *,
    pairs: int,
    seconds: float,
    work: Path,
    secret: str,
    subscription_id: str,
    connection: redis.Redis,
    reset: Callable[[], None],
    warm_up: bool = True,
) -> dict[str, Any]:
    """``pairs`` alternating (bare, ingest) runs; medians of each side, of the pairs' ratios, and CPU per request."""
    if warm_up:  # imports, connections, the first secrets load
        for endpoint in (bare, ingest):
            reset()
            requests = work / f"ingest-warm-{endpoint.name}.tsv"
            write_requests(requests, secret, subscription_id, 2000, 2000, f"w{endpoint.name}")
            run_wrk(endpoint.url, requests, 1)
    runs: dict[str, list[Run]] = {"bare": [], "ingest": []}
    for pair in range(pairs):
        order = (bare, ingest) if pair % 2 == 0 else (ingest, bare)
        for endpoint in order:
            reset()
            requests = work / f"ingest-{pair}-{endpoint.name}.tsv"
            write_requests(requests, secret, subscription_id, int(seconds * 9000), 20_000, f"i{pair}{endpoint.name[0]}")
            result, run = measured_run(endpoint.url, requests, seconds, endpoint.pgid, connection)
            if result.non_2xx:
                raise RuntimeError(f"{endpoint.name}: {result.non_2xx} answers were not 2xx")
            runs[endpoint.name].append(run)
    return summarize(runs)


def summarize(runs: dict[str, list[Run]]) -> dict[str, Any]:
    """Per side the median of every figure; the ratio as the median of the pairs' ratios."""
    summary: dict[str, Any] = {}
    for name, rows in runs.items():
        figures = {key: statistics.median(getattr(r, key) for r in rows) for key in ("rps", "p50_ms", "p99_ms", "web_us", "redis_us", "wrk_us", "total_us")}
        summary[name] = figures
    ratios = [i.rps / b.rps for b, i in zip(runs["bare"], runs["ingest"], strict=True)]
    summary["ratio"] = statistics.median(ratios)
    summary["ratios"] = ratios
    summary["pairs"] = len(ratios)
    # What the ratio tends to when CPU alone bounds both: the bare side's cost over the receiver's.
    summary["cpu_ratio"] = statistics.median(b.total_us / i.total_us for b, i in zip(runs["bare"], runs["ingest"], strict=True))
    summary["p99_over_bare"] = summary["ingest"]["p99_ms"] / summary["bare"]["p99_ms"]
    summary["runs"] = {name: [asdict(r) for r in rows] for name, rows in runs.items()}
    return summary
