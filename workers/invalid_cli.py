"""``python -m workers invalid list|show|replay``: the events set aside as invalid, and their second chance."""

from __future__ import annotations

import json
import sys
from collections import Counter
from datetime import UTC

import click

from workers import invalid as set_aside
from workers.cli_common import runtime_or_exit, settings_or_exit
from workers.registry import default_registry
from workers.runtime import WorkerRuntime


def _runtime(with_handlers: bool) -> WorkerRuntime:
    """The commands' start, as every workers command's: a bad setting is one line and exit 2."""
    return runtime_or_exit(settings_or_exit(), None if with_handlers else default_registry())


@click.group("invalid")
def invalid() -> None:
    """Events whose body could not be used: list them, see why, replay them with today's code."""


@invalid.command("list")
@click.option("--limit", default=100, show_default=True, help="At most this many, oldest first.")
def invalid_list(limit: int) -> None:
    """One line per invalid event: when it arrived, its id, subscription and reason."""
    found = set_aside.find(_runtime(False).engine, limit=limit)
    for f in found:
        received = f.received_at.astimezone(UTC) if f.received_at.tzinfo else f.received_at
        click.echo(f"{received:%Y-%m-%d %H:%M:%S}  {f.event_id:28} {f.subscription_id:20} {f.reason.splitlines()[0][:120]}")
    click.echo(f"{len(found)} invalid event(s)" + (" (limit reached)" if len(found) == limit else ""), err=True)


@invalid.command("show")
@click.argument("event_id")
def invalid_show(event_id: str) -> None:
    """One invalid event: the reason kept, what today's code says, and the payload."""
    found = set_aside.find(_runtime(False).engine, [event_id])
    if not found:
        raise click.ClickException(f"no invalid event {event_id}")
    (f,) = found
    now = set_aside.today(f)
    click.echo(f"event:        {f.event_id} (subscription {f.subscription_id}, received {f.received_at:%Y-%m-%d %H:%M:%S})")
    click.echo(f"reason kept:  {f.reason}")
    click.echo("today's code: " + ("parses it: `invalid replay` will apply it" if now is None else f"still invalid: {now}"))
    click.echo("payload:")
    try:
        click.echo(json.dumps(json.loads(f.payload), indent=2, sort_keys=True))
    except ValueError:
        click.echo(f.payload)


@invalid.command("replay")
@click.argument("event_ids", nargs=-1)
@click.option("--all", "every", is_flag=True, help="Every invalid event.")
def invalid_replay(event_ids: tuple[str, ...], every: bool) -> None:
    """Parse the events again with today's code and apply those it can use (mirror and handlers); exit 1 if any stays invalid."""
    if not event_ids and not every:
        raise click.UsageError("name event ids, or say --all")
    runtime = _runtime(True)
    found = set_aside.find(runtime.engine, event_ids)
    if not found:
        click.echo("nothing to replay")
        return
    outcomes = set_aside.replay(runtime, found)
    for event_id, outcome in outcomes.items():
        click.echo(f"{event_id:28} {outcome}")
    counts = Counter(outcome if not outcome.startswith("invalid") else "still invalid" for outcome in outcomes.values())
    click.echo(", ".join(f"{n} {what}" for what, n in sorted(counts.items())), err=True)
    if counts.get("still invalid"):
        sys.exit(1)
