"""The benchmark's harness works end to end (its smoke mode); no figure is judged here."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from devstack.services import ROOT
from tests.e2e.stack import base_env


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (apt-get install -y wrk; .ci/run installs it)")
def test_the_benchmark_smoke_run_reports_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    run = subprocess.run([sys.executable, "-m", "bench", "--smoke", "--json", str(out)], env=base_env(), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    results = json.loads(out.read_text())
    figures = [results["ingest"]["bare"]["rps"], results["ingest"]["ingest"]["rps"], results["ingest"]["ratio"],
               results["latency"]["p50_ms"], results["latency"]["p99_ms"], results["workers_sqlite_1"]["events_per_second"],
               results["workers_sqlite_2"]["events_per_second"], results["burst_sqlite"]["seconds_to_mirror_all"],
               results["backfill_sqlite"]["records_per_second"], results["views_sqlite"]["text_equality_ms"]]  # fmt: skip
    assert all(isinstance(f, float | int) and f > 0 for f in figures), figures
    assert "ingest / bare" in run.stdout


@pytest.mark.skipif(shutil.which("wrk") is None or shutil.which("redis-sentinel") is None, reason="wrk or redis-sentinel is not installed (.ci/run installs them)")
def test_the_min_replicas_comparison_runs_on_a_sentinel_set(tmp_path: Path) -> None:
    out = tmp_path / "replicas.json"
    run = subprocess.run([sys.executable, "-m", "bench", "--min-replicas", "1", "--smoke", "--json", str(out)],
                         env=base_env(), cwd=ROOT, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    results = json.loads(out.read_text())
    ingest, store = results["ingest"], results["store"]
    assert ingest["0"]["rps"] > 0 and ingest["1"]["rps"] > 0 and ingest["ratio"] > 0
    assert store["0"]["p50_us"] > 0 and store["1"]["p50_us"] > 0
    assert "MIN_REPLICAS=1 / 0:" in run.stdout
