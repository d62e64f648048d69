"""The workers' command line (``python -m workers`` or ``aiwyn-workers``): thin wrappers."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

import alembic.util
import click
import redis
import sqlalchemy

from config import Settings, SettingsError
from config.redis_connection import connect
from config.redis_exposure import open_redis_warning
from config.states import RunStatus
from workers import dead_letters
from workers.cli_common import SettingsProblem, runtime_or_exit, settings_or_exit
from workers.delivery_batches import DeliveryBatches
from workers.discovery import warn_unknown_entity_types
from workers.failed import FailedRun, Filter, discard, enqueue_replays, find, replay
from workers.invalid_cli import invalid
from workers.migrate import MigrationsNotFound, upgrade
from workers.models import MirroredRecord
from workers.registry import ANY, default_registry
from workers.runtime import start_runtime
from workers.startup import StartupTimeout, wait_for_services
from workers.sync.schedule import subscribed_types
from workers.sync_cli import SYNC_COMMANDS
from workers.worker import DrainWorker, start_sync_ticker


@click.group()
def cli() -> None:
    """Aiwyn webhook receiver: the worker side's commands."""


@cli.command()
def migrate() -> None:
    """Apply the database migrations (the ``release`` process runs this)."""
    settings = settings_or_exit()
    try:
        upgrade(settings.database_url)
    except sqlalchemy.exc.SQLAlchemyError as exc:
        raise click.ClickException(f"database at DATABASE_URL: {type(exc).__name__}: {exc.orig or exc}") from exc
    except (MigrationsNotFound, alembic.util.CommandError) as exc:  # e.g. a handler package's revision, the package gone
        raise click.ClickException(f"migrations: {exc}") from exc
    click.echo("database is at the latest migration (every branch: this service's and each handler package's)")


@cli.command()
@click.option("--burst", is_flag=True, help="Quit when the queue is empty.")
@click.option(
    "--queues",
    type=click.Choice(["all", "drain", "handlers", "sync"]),
    default="all",
    show_default=True,
    help="Which jobs: drain (the mirror), handlers (custom handlers), sync (backfill, reconcile), or all, in that order.",
)
def work(burst: bool, queues: str) -> None:
    """Process queued deliveries in this process (RQ SimpleWorker: no fork per job)."""
    settings = settings_or_exit()
    try:
        settings.require_secrets_key()  # the key of the deliveries' MAC (config.job_contract)
    except SettingsError as exc:
        raise SettingsProblem(str(exc)) from exc
    runtime = runtime_or_exit(settings)
    while True:
        try:
            wait_for_services(settings)
        except SettingsError as exc:
            raise SettingsProblem(str(exc)) from exc
        except StartupTimeout as exc:
            raise click.ClickException(str(exc)) from exc
        try:
            exposed = open_redis_warning(settings.redis_url)
            if exposed:
                logging.getLogger("workers").warning("%s", exposed)
            runtime.batches.wake_if_needed()  # deliveries left from before this start
            break
        except redis.RedisError as exc:
            # Redis went between the check and here (seen: a restart of Redis during a worker's start): wait again, never exit.
            logging.getLogger("workers").warning("Redis went away during start-up (%s); waiting for it again", type(exc).__name__)
    warn_unknown_entity_types(runtime.registry, subscribed_types(settings), lambda: [t.name for t in runtime.listing.types([ANY])])
    # RQ takes from the queues in order: a free worker always drains first.
    chosen = {
        "all": [runtime.queue, runtime.handler_queue, runtime.sync_queue],
        "drain": [runtime.queue],
        "handlers": [runtime.handler_queue],
        "sync": [runtime.sync_queue],
    }[queues]
    worker = DrainWorker(chosen, connection=runtime.redis, runtime=runtime)
    if runtime.sync_queue.name in [queue.name for queue in chosen]:
        start_sync_ticker(runtime)  # at once: a first start copies what the mirror lacks
    # The scheduler moves handler retries and RQ's job retries back to the queue when due.
    worker.work(burst=burst, with_scheduler=True, logging_level=settings.log_level)


@cli.command()
@click.option("--type", "entity_type", help="Only this entity type.")
@click.option("--limit", default=20, show_default=True, help="How many rows, newest first.")
def records(entity_type: str | None, limit: int) -> None:
    """Show the newest rows of the mirror (aiwyn_records)."""
    engine = start_runtime(settings_or_exit(), default_registry()).engine
    query = sqlalchemy.select(MirroredRecord).order_by(MirroredRecord.updated_at.desc()).limit(limit)
    if entity_type:
        query = query.where(MirroredRecord.entity_type == entity_type)
    with sqlalchemy.orm.Session(engine) as session:
        rows = session.scalars(query).all()
    for row in rows:
        state = "active" if row.active else "deleted"
        click.echo(f"{row.entity_type:12} {row.record_id:20} v{row.version} {state:7} {json.dumps(row.attributes, sort_keys=True)}")
    if not rows:
        click.echo("the mirror is empty")


@cli.group()
def failed() -> None:
    """The failed list: handler runs that gave up. Replay them once the cause is fixed."""


def _filters(function):  # noqa: ANN001, ANN202 - a click decorator
    for option in reversed(
        [
            click.option("--handler", help="Only this handler."),
            click.option("--type", "entity_type", help="Only events of this entity type."),
            click.option("--since", type=click.DateTime(_TIME_FORMATS), help="Only runs that failed at or after this UTC time."),
            click.option("--until", type=click.DateTime(_TIME_FORMATS), help="Only runs that failed before this UTC time."),
        ]
    ):
        function = option(function)
    return function


_TIME_FORMATS = ["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"]


def _selection(function):  # noqa: ANN001, ANN202 - a click decorator
    """Which failed runs a command acts on: event ids, the filters, or --all."""
    function = click.option("--all", "every", is_flag=True, help="Every failed run.")(function)
    return click.argument("event_ids", nargs=-1)(_filters(function))


def _utc(moment: datetime) -> datetime:
    """A stored time as UTC, the zone of --since and --until: PostgreSQL answers in its session's TimeZone (SQLite: naive UTC)."""
    return moment.astimezone(UTC) if moment.tzinfo else moment


def _filter(event_ids: tuple[str, ...], handler: str | None, entity_type: str | None, since: datetime | None, until: datetime | None) -> Filter:
    utc = [moment.replace(tzinfo=UTC) if moment else None for moment in (since, until)]
    return Filter(event_ids, handler, entity_type, *utc)


@failed.command("list")
@_filters
@click.option("--limit", default=100, show_default=True, help="At most this many runs, oldest first.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object a line, with the full error and traceback.")
def failed_list(handler: str | None, entity_type: str | None, since: datetime | None, until: datetime | None, limit: int, as_json: bool) -> None:
    """List failed runs: when, event, handler, attempts, error (its first line, in full)."""
    engine = start_runtime(settings_or_exit(), default_registry()).engine
    found = find(engine, _filter((), handler, entity_type, since, until), limit)
    for run in found:
        if as_json:
            click.echo(json.dumps(_as_json(run), sort_keys=True))
            continue
        error = (run.last_error or "worker died during the run").splitlines()[0]
        click.echo(f"{_utc(run.updated_at):%Y-%m-%d %H:%M:%S}  {run.event_id:24} {run.handler:24} {run.entity_type or '?':12} x{run.attempts}  {error}")
    click.echo(f"{len(found)} failed run(s)" + (" (limit reached)" if len(found) == limit else ""), err=True)


def _as_json(run: FailedRun) -> dict[str, Any]:
    return {
        "event_id": run.event_id, "handler": run.handler, "status": run.status, "attempts": run.attempts,
        "failed_at": _utc(run.updated_at).strftime("%Y-%m-%dT%H:%M:%SZ"), "entity_type": run.entity_type,
        "operation": run.operation, "record_id": run.record_id, "error": run.last_error, "traceback": run.traceback,
    }  # fmt: skip


@failed.command("show")
@click.argument("event_id")
@click.option("--handler", help="Only this handler's run.")
def failed_show(event_id: str, handler: str | None) -> None:
    """Show an event's failed runs with the full error and the event's payload."""
    engine = start_runtime(settings_or_exit(), default_registry()).engine
    found = find(engine, Filter((event_id,), handler))
    if not found:
        raise click.ClickException(f"no failed run for event {event_id}" + (f" and handler {handler}" if handler else ""))
    for run in found:
        click.echo(f"event:    {run.event_id} ({run.entity_type} {run.operation} {run.record_id})")
        click.echo(f"handler:  {run.handler}  status: {run.status}  attempts: {run.attempts}  last: {_utc(run.updated_at):%Y-%m-%d %H:%M:%S}")
        click.echo(f"error:    {run.last_error or 'worker died during the run'}")
        if run.traceback:
            click.echo(run.traceback.rstrip())
    click.echo("payload:")
    click.echo(json.dumps(json.loads(found[0].payload), indent=2, sort_keys=True))


def _selected(event_ids: tuple[str, ...], every: bool, **filters: Any) -> Filter:
    which = _filter(event_ids, **filters)
    if which.is_empty and not every:
        raise click.UsageError("name event ids, give a filter, or say --all")
    return which


@failed.command("replay")
@_selection
@click.option("--enqueue", is_flag=True, help="Hand the replays to the workers (their queue) instead of running them here.")
def failed_replay(event_ids: tuple[str, ...], every: bool, enqueue: bool, **filters: Any) -> None:
    """Run the failed handlers again on their events: in this process, with a progress bar, or
    with --enqueue in the workers (no handler code or environment needed here)."""
    settings = settings_or_exit()
    runtime = start_runtime(settings, default_registry()) if enqueue else runtime_or_exit(settings)
    found = find(runtime.engine, _selected(event_ids, every, **filters))
    if not found:
        click.echo("nothing to replay")
        return
    if enqueue:
        jobs = enqueue_replays(runtime, found)
        click.echo(f"queued {len(found)} replay(s) in {jobs} job(s): python -m workers failed list shows what fails again")
        return
    with click.progressbar(length=len(found), label="replaying", file=sys.stderr) as bar:
        outcomes = replay(runtime, found, progress=lambda run: bar.update(1))
    click.echo(", ".join(f"{count} {outcome}" for outcome, count in sorted(outcomes.items())))
    if set(outcomes) - {RunStatus.SUCCEEDED, RunStatus.SKIPPED}:
        sys.exit(1)


@failed.command("discard")
@_selection
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def failed_discard(event_ids: tuple[str, ...], every: bool, yes: bool, **filters: Any) -> None:
    """Drop failed runs from the list for good (their events then count as processed)."""
    engine = start_runtime(settings_or_exit(), default_registry()).engine
    found = find(engine, _selected(event_ids, every, **filters))
    if found and not yes:
        click.confirm(f"discard {len(found)} failed run(s)?", abort=True)
    click.echo(f"discarded {discard(engine, found)} run(s)")


cli.add_command(invalid)
for command in SYNC_COMMANDS:
    cli.add_command(command)
@cli.group("dead-letter")
def dead_letter() -> None:
    """Deliveries that failed on their own again and again, kept in Redis. Replay them once fixed."""


def _redis(settings: Settings) -> redis.Redis:
    return connect(settings.redis_url)


@dead_letter.command("list")
def dead_letter_list() -> None:
    """List dead letters: when, event, failures, error."""
    settings = settings_or_exit()
    found = dead_letters.find(_redis(settings), settings.queue_name)
    for letter in found:
        click.echo(f"{letter.at:25} {letter.event_id:24} x{letter.failures}  {letter.error.splitlines()[0][:100]}")
    click.echo(f"{len(found)} dead letter(s)", err=True)


@dead_letter.command("show")
@click.argument("event_id")
def dead_letter_show(event_id: str) -> None:
    """Show a dead letter's full error and its body as received."""
    settings = settings_or_exit()
    found = dead_letters.find(_redis(settings), settings.queue_name, (event_id,))
    if not found:
        raise click.ClickException(f"no dead letter for event {event_id}")
    letter = found[0]
    click.echo(f"event:        {letter.event_id}  subscription: {letter.subscription_id}")
    click.echo(f"failed:       {letter.failures} times, last at {letter.at}")
    click.echo(f"error:        {letter.error}")
    click.echo("body:")
    click.echo(letter.body.decode("utf-8", errors="replace"))


def _dead_ids(settings: Settings, event_ids: tuple[str, ...], every: bool) -> list[str]:
    if not event_ids and not every:
        raise click.UsageError("name event ids or say --all")
    return [letter.event_id for letter in dead_letters.find(_redis(settings), settings.queue_name, event_ids)]


@dead_letter.command("replay")
@click.argument("event_ids", nargs=-1)
@click.option("--all", "every", is_flag=True, help="Every dead letter.")
def dead_letter_replay(event_ids: tuple[str, ...], every: bool) -> None:
    """Put dead letters back on the delivery list, for the workers to try again."""
    settings = settings_or_exit()
    connection = _redis(settings)
    moved = dead_letters.replay(connection, settings.queue_name, _dead_ids(settings, event_ids, every))
    DeliveryBatches(settings, connection, lease_seconds=settings.job_timeout).wake_if_needed()
    click.echo(f"replayed {moved} delivery(ies)")


@dead_letter.command("discard")
@click.argument("event_ids", nargs=-1)
@click.option("--all", "every", is_flag=True, help="Every dead letter.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def dead_letter_discard(event_ids: tuple[str, ...], every: bool, yes: bool) -> None:
    """Drop dead letters for good (their events are never applied)."""
    settings = settings_or_exit()
    ids = _dead_ids(settings, event_ids, every)
    if ids and not yes:
        click.confirm(f"discard {len(ids)} dead letter(s)?", abort=True)
    click.echo(f"discarded {dead_letters.discard(_redis(settings), settings.queue_name, ids)} dead letter(s)")


def main() -> None:
    cli(prog_name="aiwyn-workers")


if __name__ == "__main__":
    sys.exit(main())
