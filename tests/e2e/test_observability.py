"""/metrics and /status on the real processes: a known stream, two web deployments (two gunicorn
workers each) and a worker process, exact counts on every scrape; the status page in headless Chromium."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from devstack.databases import throwaway_database
from devstack.services import Process, free_port, start_web
from receiver.signatures import NO_MATCH
from tests.databases import POSTGRES_URL
from tests.e2e.stack import Stack, start_stack, wait_for

pytestmark = pytest.mark.e2e
N = 6  # client records created: N accepted deliveries; each fails both custom handlers (one attempt each)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, list[str], list[str]]]:
    """One stack for the module (PostgreSQL where set, as in production), the stream already sent; its record ids and the web URLs."""
    kind = "postgres" if POSTGRES_URL else "sqlite"
    directory = tmp_path_factory.mktemp(f"observe-{kind}")
    (directory / "state").mkdir()
    with throwaway_database(kind, directory) as database_url:
        stack = start_stack(
            directory, database_url, AIWYN_RECEIVER_HANDLER_MODULES="tests.e2e.handlers_under_test", AIWYN_RECEIVER_HANDLER_ATTEMPTS="1",
            AIWYN_E2E_STATE=str(directory / "state"), AIWYN_RECEIVER_BACKFILL_ON_START="1",  # the status page's sync section
        )  # fmt: skip
        second: Process | None = None
        try:
            port = free_port()
            second = start_web(stack.env | {"PORT": str(port)}, directory / "web-2.log", port)  # another deployment, same Redis and database
            ids = [r["id"] for r in stack.records(*["POST"], *[{"type": "client", "systemRef": {"system": "erp", "id": f"C-{uuid.uuid4().hex[:8]}"},
                                                                 "attributes": {"n": n}} for n in range(N)]).json()["data"]["records"]]  # fmt: skip
            send_refusals(stack)
            yield stack, ids, [stack.web_url, f"http://127.0.0.1:{port}"]
        finally:
            if second is not None:
                second.stop()
            stack.stop()


def send_refusals(stack: Stack) -> None:
    """M refused deliveries: 2 forged, 1 of a subscription not ours, 1 of a wrong content type."""
    sub = stack.subscription()["id"]
    now = str(int(time.time()))
    base = {"Content-Type": "application/json", "webhook-timestamp": now, "webhook-signature": "v1,Zm9yZ2VkIHNpZ25hdHVyZSBmb3JnZWQgc2lnbmF0dXJlIQ=="}
    for n, subscription in enumerate((sub, sub, "sub_NOTOURS")):
        headers = base | {"webhook-id": f"evt_forged_{n}", "aiwyn-subscription-id": subscription}
        assert httpx.post(f"{stack.web_url}/webhooks/aiwyn", content=b"{}", headers=headers, timeout=5).status_code == 401
    assert httpx.post(f"{stack.web_url}/webhooks/aiwyn", content=b"x", headers={"Content-Type": "text/plain"}, timeout=5).status_code == 415


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    answer = httpx.get(f"{url}/metrics", timeout=5)
    assert answer.status_code == 200, answer.text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for family in text_string_to_metric_families(answer.text) for s in family.samples}


def named(figures: dict, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {labels: value for (metric, labels), value in figures.items() if metric == name}


def settled(urls: list[str]) -> dict:
    """Scrapes once the stream is all counted and nothing moves: N events, 2N failed runs, the sync done."""
    figures = scrape(urls[0])
    runs = named(figures, "aiwyn_handler_runs_total")
    done = sum(named(figures, "aiwyn_events_total").values()) == N and sum(v for k, v in runs.items() if ("outcome", "failed") in k) == 2 * N
    return figures if done and figures[("aiwyn_queue_deliveries", ())] == 0 and figures == scrape(urls[0]) else {}


def test_metrics_show_the_streams_exact_counts_on_every_scrape_of_either_deployment(observed: tuple[Stack, list[str], list[str]]) -> None:
    stack, ids, urls = observed
    figures = wait_for(lambda: settled(urls), timeout=60, what="the stream counted")
    for url in urls * 4:  # two gunicorn workers behind each address, two deployments
        assert scrape(url) == figures
    sub = stack.subscription()["id"]
    assert named(figures, "aiwyn_webhook_requests_total") == {
        (("reason", "queued"), ("status", "202")): N,
        (("reason", NO_MATCH), ("status", "401")): 2,
        (("reason", "unknown subscription"), ("status", "401")): 1,
        (("reason", "wrong content type"), ("status", "415")): 1,
    }
    assert figures[("aiwyn_webhook_request_duration_seconds_count", ())] == N + 4
    assert named(figures, "aiwyn_events_total") == {(("entity_type", "client"), ("operation", "CREATE"), ("status", "pending")): N}
    assert named(figures, "aiwyn_handler_runs_total") == {
        (("handler", "mirror"), ("outcome", "succeeded")): N,
        (("handler", "broken"), ("outcome", "failed")): N,
        (("handler", "flaky"), ("outcome", "failed")): N,
    }
    assert named(figures, "aiwyn_failed_runs") == {(("handler", "broken"),): N, (("handler", "flaky"),): N}
    assert figures[("aiwyn_mirror_lag_seconds_count", ())] == N
    assert figures[("aiwyn_mirror_lag_seconds_bucket", (("le", "30.0"),))] == N
    assert time.time() - figures[("aiwyn_last_event_timestamp_seconds", (("subscription", sub),))] < 120
    assert figures[("aiwyn_workers", ())] == 1
    assert (figures[("aiwyn_invalid_events", ())], figures[("aiwyn_dead_letters", ())]) == (0, 0)
    assert len(ids) == N


def test_the_status_page_in_headless_chromium(observed: tuple[Stack, list[str], list[str]], tmp_path: Path) -> None:
    if CHROMIUM is None:
        if os.environ.get("CI"):  # CI installs it (.ci/tools.sh): a missing one there is a broken CI, not a skip
            pytest.fail("chromium is not installed, and CI is set (.ci/tools.sh installs it)")
        pytest.skip("chromium is not installed (Debian: apt-get install chromium)")
    stack, ids, urls = observed
    wait_for(lambda: settled(urls), timeout=60, what="the stream counted")
    sub = stack.subscription()["id"]
    # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*flags, "--dump-dom", f"{urls[1]}/status"], capture_output=True, text=True, timeout=60, check=True).stdout
    screenshot = tmp_path / "status.png"
    subprocess.run([*flags, f"--screenshot={screenshot}", "--window-size=1280,2400", f"{urls[0]}/status"], capture_output=True, timeout=60, check=True)
    assert screenshot.stat().st_size > 10_000
    assert "Aiwyn mirror: status" in dom and "<script" not in dom
    assert sub in dom.split('id="subscriptions"')[1].split("</table>")[0]
    assert 'id="queue-depth">0<' in dom and 'id="workers">1<' in dom and 'id="lag-count">' + str(N) + "<" in dom
    events = dom.split('id="events"')[1].split("</table>")[0]
    assert "client" in events and "CREATE" in events and "pending" in events and f">{N}<" in events
    failed = dom.split('id="failed"')[1].split("</table>")[0]
    assert failed.count("<tr>") == 1 + min(20, 2 * N) and "broken on client CREATE" in failed and "the CRM rejects the payload" in failed
    assert f"Failed handler runs: {2 * N}" in dom
    assert "Invalid events: 0" in dom and "Dead letters: 0" in dom
    assert 'id="sync"' in dom and "client" in dom.split('id="sync"')[1]
