"""``GET /status``: the mirror's health on one server-rendered page (no script, no external asset).

The same figures as ``/metrics`` (``receiver.observed``) and the newest rows of the lists an
operator acts on: failed runs, invalid events, dead letters. Same token rule as ``/metrics``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Blueprint, Response, render_template_string

from receiver.app import current_runtime
from receiver.metrics import allowed, refused
from receiver.observed import (
    age,
    events_last_day,
    lag_last_hour,
    newest_dead_letters,
    newest_failed_runs,
    newest_invalid_events,
    read,
    since,
)

status = Blueprint("status", __name__)

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Aiwyn mirror: status</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.6em}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f3f3f3}.bad{color:#b00020;font-weight:bold}.ok{color:#1b5e20}.num{text-align:right}
td.error{max-width:50em;font-family:monospace;font-size:12px;white-space:pre-wrap;word-break:break-all}
</style></head><body>
<h1>Aiwyn mirror: status</h1>
<p>As of {{ now }} UTC. Figures are shared by every web and worker process.</p>

<h2>Deliveries per subscription</h2>
<table id="subscriptions"><tr><th>subscription</th><th>last delivery accepted</th></tr>
{% for sub, at, ago, stale in subscriptions %}<tr><td>{{ sub }}</td><td class="{{ 'bad' if stale else 'ok' }}">{{ at }} ({{ ago }} ago)</td></tr>
{% else %}<tr><td colspan="2">no delivery accepted yet</td></tr>{% endfor %}
</table>

<h2>Queue and workers</h2>
<table id="queue">
<tr><th>deliveries waiting or claimed</th><td class="num" id="queue-depth">{{ s.deliveries }}</td></tr>
<tr><th>oldest waiting for</th><td class="num {{ 'bad' if s.oldest_age > 120 else '' }}" id="queue-age">{{ oldest }}</td></tr>
<tr><th>workers alive</th><td class="num {{ 'bad' if not s.workers else '' }}" id="workers">{{ s.workers }}</td></tr>
</table>

<h2>Mirror lag, last hour</h2>
<table id="lag"><tr><th>events</th><th>p50 at most</th><th>p99 at most</th></tr>
<tr><td class="num" id="lag-count">{{ lag.count }}</td><td class="num">{{ p50 }}</td><td class="num {{ 'bad' if p99_bad else '' }}">{{ p99 }}</td></tr></table>

<h2>Events, last 24 hours</h2>
<table id="events"><tr><th>type</th><th>operation</th><th>status</th><th>events</th></tr>
{% for (entity_type, operation, st), count in events %}<tr><td>{{ entity_type }}</td><td>{{ operation }}</td>
<td class="{{ 'bad' if st in ('failed', 'invalid') else '' }}">{{ st }}</td><td class="num">{{ count }}</td></tr>
{% else %}<tr><td colspan="4">none</td></tr>{% endfor %}
</table>

<h2>Failed handler runs: {{ failed_total }} (newest {{ failed|length }})</h2>
<p>Replay with <code>python -m workers failed replay</code> once the cause is fixed.</p>
<table id="failed"><tr><th>event</th><th>run</th><th>last attempt</th><th>error</th></tr>
{% for row in failed %}<tr><td>{{ row.event_id }}</td><td>{{ row.what }}</td><td>{{ when(row.at) }}</td><td class="error">{{ row.error[:300] }}</td></tr>
{% else %}<tr><td colspan="4">none</td></tr>{% endfor %}
</table>

<h2>Invalid events: {{ s.invalid_events }}</h2>
<table id="invalid"><tr><th>event</th><th>received</th><th>reason</th></tr>
{% for row in invalid %}<tr><td>{{ row.event_id }}</td><td>{{ when(row.at) }}</td><td class="error">{{ row.error[:300] }}</td></tr>
{% else %}<tr><td colspan="3">none</td></tr>{% endfor %}
</table>

<h2>Dead letters: {{ s.dead_letters }}</h2>
<table id="dead-letters"><tr><th>event</th><th>why</th><th>since</th><th>error</th></tr>
{% for row in dead %}<tr><td>{{ row.event_id }}</td><td>{{ row.what }}</td><td>{{ when(row.at) }}</td><td class="error">{{ row.error[:300] }}</td></tr>
{% else %}<tr><td colspan="4">none</td></tr>{% endfor %}
</table>

<h2>Sync per type</h2>
<table id="sync"><tr><th>type</th><th>backfill</th><th>records</th><th>last reconcile</th><th>its summary</th></tr>
{% for row in s.sync %}<tr><td>{{ row.entity_type }}</td><td>{{ when(row.backfill_completed_at) if row.backfill_completed_at else 'in progress' if row.backfill_started_at else 'not started' }}</td>
<td class="num">{{ row.backfill_records }}{% if row.backfill_estimate %} of ~{{ row.backfill_estimate }}{% endif %}</td>
<td>{{ when(row.reconcile_completed_at) }}</td><td>{{ row.reconcile_summary or '' }}</td></tr>
{% else %}<tr><td colspan="5">no sync has run</td></tr>{% endfor %}
</table>
</body></html>
"""

_SILENCE_SECONDS = 6 * 3600  # as the alert's default (deploy/prometheus/alerts.yml)


def _bound(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return "over 1 d" if seconds == float("inf") else age(seconds)


@status.get("/status")
def status_page() -> Response:
    runtime = current_runtime()
    if not allowed(runtime.settings):
        return refused()
    queue = runtime.settings.queue_name
    snapshot = read(runtime.redis, runtime.database, queue)
    now = snapshot.now
    lag = lag_last_hour(runtime.redis, queue, now)
    subscriptions = [
        (sub, f"{datetime.fromtimestamp(at, UTC):%Y-%m-%d %H:%M:%S} UTC", age(now - at), now - at > _SILENCE_SECONDS)
        for sub, at in sorted(snapshot.last_event.items())
    ]
    p99 = lag.quantile(0.99)
    html = render_template_string(
        _PAGE,
        s=snapshot,
        now=f"{datetime.fromtimestamp(now, UTC):%Y-%m-%d %H:%M:%S}",
        subscriptions=subscriptions,
        oldest=age(snapshot.oldest_age) if snapshot.deliveries else "nothing waits",
        lag=lag,
        p50=_bound(lag.quantile(0.5)),
        p99=_bound(p99),
        p99_bad=p99 is not None and p99 > 60,
        events=sorted(events_last_day(runtime.redis, queue, now).items()),
        failed=newest_failed_runs(runtime.database),
        failed_total=sum(snapshot.failed_runs.values()),
        invalid=newest_invalid_events(runtime.database),
        dead=newest_dead_letters(runtime.redis, queue),
        when=lambda moment: since(moment, now),
    )
    return Response(html, 200, mimetype="text/html")
