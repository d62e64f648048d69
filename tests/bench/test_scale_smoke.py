"""``python -m bench --scale`` works end to end on tiny counts (its smoke mode); no figure is judged here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from devstack.services import ROOT
from tests.e2e.stack import base_env


@pytest.mark.skipif(not os.environ.get("TEST_POSTGRES_URL"), reason="the scale bench measures PostgreSQL: TEST_POSTGRES_URL is not set")
def test_the_scale_benchmark_smoke_run_reports_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "scale.json"
    run = subprocess.run([sys.executable, "-m", "bench", "--scale", "--smoke", "--json", str(out)], env=base_env(), cwd=ROOT,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    results = json.loads(out.read_text())
    rows, redis, workers = results["rows"], results["redis"], results["workers"]
    figures = [rows["ratio"], rows["batch_path_ratio"], redis["per_waiting_delivery"], redis["per_remembered_id"], redis["memory_usage_seen_key"],
               *(rows[size][name] for size in ("100", "1000") for name in ("events_per_second", "batch_path_events_per_second")),
               *(workers[count]["events_per_second"] for count in ("1", "2", "4")),
               *(size for by_rate in redis["window"].values() for size in by_rate.values())]  # fmt: skip
    assert all(isinstance(f, float | int) and f > 0 for f in figures), figures
    # The seeded records were really there while the second figure was measured.
    assert rows["1000"]["bytes_aiwyn_records"] > rows["100"]["bytes_aiwyn_records"]
    assert "deduplication window" in run.stdout
