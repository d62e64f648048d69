"""The workers' command line (``python -m workers`` or ``aiwyn-workers``): thin wrappers."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Any

import click
import redis
import sqlalchemy

from aiwyn_api.client import AiwynAPIError
from config import Settings, SettingsError, load_settings
from config.logs import configure_logging
from workers import backfill_events
from workers.discovery import HandlerLoadError
from workers.failed import Filter, discard, find, replay
from workers.invalid_cli import invalid
from workers.migrate import upgrade
from workers.models import MirroredRecord
from workers.registry import HandlerRegistry, default_registry
from workers.runtime import WorkerRuntime, start_runtime
from workers.sync import backfill as sync_backfill
from workers.sync import state as sync_state
from workers.sync.listing import EntityType, SyncError
from workers.sync.progress import ProgressLine
from workers.sync.reconcile import EXAMPLES, reconcile_type
from workers.sync.schedule import lease_seconds, reconcile_lock, subscribed_types
from workers.worker import DrainWorker, start_sync_ticker


def _settings() -> Settings:
    try:
        settings = load_settings()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from exc
    configure_logging(settings.log_level)
    return settings


def _runtime(settings: Settings, registry: HandlerRegistry | None = None) -> WorkerRuntime:
    try:
        return start_runtime(settings, registry)
    except HandlerLoadError as exc:
        raise click.ClickException(str(exc)) from exc


@click.group()
def cli() -> None:
    """Aiwyn webhook receiver: the worker side's commands."""


@cli.command()
def migrate() -> None:
    """Apply the database migrations (the ``release`` process runs this)."""
    settings = _settings()
    try:
        upgrade(settings.database_url)
    except sqlalchemy.exc.SQLAlchemyError as exc:
        raise click.ClickException(f"database at DATABASE_URL: {type(exc).__name__}: {exc.orig or exc}") from exc
    click.echo("database is at the latest migration")


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
    settings = _settings()
    runtime = _runtime(settings)
    try:
        runtime.redis.ping()
        runtime.batches.wake_if_needed()  # deliveries left from before this start
    except redis.RedisError as exc:
        raise click.ClickException(f"Redis at REDIS_URL: {type(exc).__name__}: {exc}") from exc
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
    engine = start_runtime(_settings(), default_registry()).engine
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


def _utc(moment: datetime) -> datetime:
    """A stored time as UTC, the zone of --since and --until: PostgreSQL answers in its session's TimeZone (SQLite: naive UTC)."""
    return moment.astimezone(UTC) if moment.tzinfo else moment


def _filter(event_ids: tuple[str, ...], handler: str | None, entity_type: str | None, since: datetime | None, until: datetime | None) -> Filter:
    utc = [moment.replace(tzinfo=UTC) if moment else None for moment in (since, until)]
    return Filter(event_ids, handler, entity_type, *utc)


@failed.command("list")
@_filters
@click.option("--limit", default=100, show_default=True, help="At most this many runs, oldest first.")
def failed_list(handler: str | None, entity_type: str | None, since: datetime | None, until: datetime | None, limit: int) -> None:
    """List failed runs: when, event, handler, attempts, error."""
    engine = start_runtime(_settings(), default_registry()).engine
    found = find(engine, _filter((), handler, entity_type, since, until), limit)
    for run in found:
        error = (run.last_error or "worker died during the run").splitlines()[0][:100]
        click.echo(f"{_utc(run.updated_at):%Y-%m-%d %H:%M:%S}  {run.event_id:24} {run.handler:24} {run.entity_type or '?':12} x{run.attempts}  {error}")
    click.echo(f"{len(found)} failed run(s)" + (" (limit reached)" if len(found) == limit else ""), err=True)


@failed.command("show")
@click.argument("event_id")
@click.option("--handler", help="Only this handler's run.")
def failed_show(event_id: str, handler: str | None) -> None:
    """Show an event's failed runs with the full error and the event's payload."""
    engine = start_runtime(_settings(), default_registry()).engine
    found = find(engine, Filter((event_id,), handler))
    if not found:
        raise click.ClickException(f"no failed run for event {event_id}" + (f" and handler {handler}" if handler else ""))
    for run in found:
        click.echo(f"event:    {run.event_id} ({run.entity_type} {run.operation} {run.record_id})")
        click.echo(f"handler:  {run.handler}  status: {run.status}  attempts: {run.attempts}  last: {_utc(run.updated_at):%Y-%m-%d %H:%M:%S}")
        click.echo(f"error:    {run.last_error or 'worker died during the run'}")
    click.echo("payload:")
    click.echo(json.dumps(json.loads(found[0].payload), indent=2, sort_keys=True))


def _selected(event_ids: tuple[str, ...], every: bool, **filters: Any) -> Filter:
    which = _filter(event_ids, **filters)
    if which.is_empty and not every:
        raise click.UsageError("name event ids, give a filter, or say --all")
    return which


@failed.command("replay")
@click.argument("event_ids", nargs=-1)
@_filters
@click.option("--all", "every", is_flag=True, help="Every failed run.")
def failed_replay(event_ids: tuple[str, ...], every: bool, **filters: Any) -> None:
    """Run the failed handlers again on their events, in this process, with a progress bar."""
    settings = _settings()
    runtime = _runtime(settings)
    found = find(runtime.engine, _selected(event_ids, every, **filters))
    if not found:
        click.echo("nothing to replay")
        return
    with click.progressbar(length=len(found), label="replaying", file=sys.stderr) as bar:
        outcomes = replay(runtime, found, progress=lambda run: bar.update(1))
    click.echo(", ".join(f"{count} {outcome}" for outcome, count in sorted(outcomes.items())))
    if set(outcomes) - {"succeeded", "skipped"}:
        sys.exit(1)


@failed.command("discard")
@click.argument("event_ids", nargs=-1)
@_filters
@click.option("--all", "every", is_flag=True, help="Every failed run.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def failed_discard(event_ids: tuple[str, ...], every: bool, yes: bool, **filters: Any) -> None:
    """Drop failed runs from the list for good (their events then count as processed)."""
    engine = start_runtime(_settings(), default_registry()).engine
    found = find(engine, _selected(event_ids, every, **filters))
    if found and not yes:
        click.confirm(f"discard {len(found)} failed run(s)?", abort=True)
    click.echo(f"discarded {discard(engine, found)} run(s)")


def _iso_time(_ctx: click.Context, _param: click.Parameter, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 time (e.g. 2026-11-30T00:00:00Z)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _sync_types(runtime: WorkerRuntime, wanted: tuple[str, ...]) -> list[EntityType]:
    """The named types, else every subscribed one, with their listing URLs; a clear error for an unknown one."""
    try:
        runtime.settings.require_api()
        types = runtime.listing.types(wanted or subscribed_types(runtime.settings))
    except (SettingsError, SyncError, AiwynAPIError) as exc:
        raise click.ClickException(str(exc)) from exc
    unknown = sorted(set(wanted) - {t.name for t in types} - {"*"})
    if unknown:
        raise click.ClickException(f"unknown entity type(s): {', '.join(unknown)} (not in Aiwyn's /records/types)")
    return types


@cli.command()
@click.option("--type", "wanted", multiple=True, help="Only this entity type (repeatable); default: every subscribed type.")
@click.option("--since", callback=_iso_time, help="Only records changed at or after this ISO 8601 time.")
@click.option("--enqueue", is_flag=True, help="Hand the pages to the workers (one RQ job a page) instead of copying here.")
def backfill(wanted: tuple[str, ...], since: datetime | None, enqueue: bool) -> None:
    """Copy every record of the subscribed types from Aiwyn into the mirror; resumes where a killed run stopped."""
    settings = _settings()
    runtime = _runtime(settings)
    types = _sync_types(runtime, wanted)
    lease = lease_seconds(settings)
    if enqueue:
        for entity_type in types:
            held = sync_state.begin(runtime.engine, entity_type.name, lease, since, steal=True)
            assert held is not None
            runtime.sync.enqueue_page(entity_type, held.token)
        click.echo(f"queued the backfill of {len(types)} type(s) for the workers; follow it with: python -m workers sync-status")
        return
    line = ProgressLine()
    hook = backfill_events.Hook(runtime) if settings.backfill_runs_handlers else None
    try:
        sync_backfill.run(runtime.engine, runtime.listing, types, settings.backfill_page_size, lease, since, line, hook)
    except sync_state.LeaseLost as exc:
        raise click.ClickException(f"another backfill of {exc} took over; this one stops") from exc
    except (SyncError, AiwynAPIError) as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        if hook is not None:
            hook.enqueue()
    click.echo(line.summary(len(types)))


@cli.command("reconcile")
@click.option("--type", "wanted", multiple=True, help="Only this entity type (repeatable); default: every subscribed type.")
@click.option("--dry-run", is_flag=True, help="Report the drift, change nothing.")
def reconcile_command(wanted: tuple[str, ...], dry_run: bool) -> None:
    """Compare the mirror with Aiwyn's listing: repair missing and outdated rows, mark those Aiwyn no longer lists."""
    settings = _settings()
    runtime = _runtime(settings)
    types = _sync_types(runtime, wanted)
    lock = reconcile_lock(settings, runtime.redis)
    if not lock.acquire():
        raise click.ClickException("a reconcile is running already (in a worker or another command); try again when it ends")
    try:
        known = sync_state.states(runtime.engine)
        for entity_type in types:
            if entity_type.name in known and sync_state.in_progress(known[entity_type.name]):
                click.echo(f"{entity_type.name}: skipped, its backfill is in progress")
                continue
            drift = reconcile_type(runtime.engine, runtime.listing, entity_type, settings.backfill_page_size, dry_run, on_page=lock.reacquire)
            click.echo(f"{entity_type.name}: {drift.summary()}" + (" (dry run: nothing changed)" if dry_run else ""))
            for kind in ("missing", "behind", "gone"):
                for record_id in getattr(drift, kind)[:EXAMPLES]:
                    click.echo(f"  {kind} {record_id}")
    except (SyncError, AiwynAPIError) as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        lock.release()


def _when(moment: datetime | None) -> str:
    aware = sync_state.aware(moment)
    return f"{aware:%Y-%m-%dT%H:%M:%SZ}" if aware else "never"


@cli.command("sync-status")
def sync_status() -> None:
    """One line per subscribed type: never, backfilling <n> of about <m>, or complete <UTC time>; and its last reconcile."""
    settings = _settings()
    runtime = start_runtime(settings, default_registry())
    known = sync_state.states(runtime.engine)
    names = subscribed_types(settings)
    if "*" in names:
        try:
            names = [t.name for t in runtime.listing.types(names)]
        except (SettingsError, SyncError, AiwynAPIError) as exc:
            click.echo(f"cannot resolve '*' through Aiwyn ({exc}); showing the types synced so far", err=True)
            names = sorted(known)
    for name in names:
        row = known.get(name)
        if row is not None and sync_state.in_progress(row):
            status = f"backfilling {row.backfill_records} of about {row.backfill_estimate if row.backfill_estimate else '?'}"
        elif row is not None and row.backfill_completed_at is not None:
            status = f"complete {_when(row.backfill_completed_at)}"
        else:
            status = "never"
        reconciled = f"reconciled {_when(row.reconcile_completed_at)} ({row.reconcile_summary})" if row and row.reconcile_completed_at else "reconciled never"
        click.echo(f"{name:24} {status:44} {reconciled}")


cli.add_command(invalid)


def main() -> None:
    cli(prog_name="aiwyn-workers")


if __name__ == "__main__":
    sys.exit(main())
