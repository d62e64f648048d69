"""The sync's commands: ``backfill``, ``reconcile``, ``sync-status`` and ``views`` (thin wrappers over ``workers.sync``)."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from aiwyn_api.client import AiwynAPIError
from config import SettingsError
from workers import backfill_events
from workers.cli_common import runtime_or_exit, settings_or_exit
from workers.registry import default_registry
from workers.runtime import WorkerRuntime, start_runtime
from workers.sync import backfill as sync_backfill
from workers.sync import state as sync_state
from workers.sync import views
from workers.sync.listing import EntityType, SyncError
from workers.sync.progress import ProgressLine
from workers.sync.reconcile import EXAMPLES, reconcile_type
from workers.sync.schedule import lease_seconds, reconcile_lock, subscribed_types


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


@click.command()
@click.option("--type", "wanted", multiple=True, help="Only this entity type (repeatable); default: every subscribed type.")
@click.option("--since", callback=_iso_time, help="Only records changed at or after this ISO 8601 time.")
@click.option("--enqueue", is_flag=True, help="Hand the pages to the workers (one RQ job a page) instead of copying here.")
def backfill(wanted: tuple[str, ...], since: datetime | None, enqueue: bool) -> None:
    """Copy every record of the subscribed types from Aiwyn into the mirror; resumes where a killed run stopped."""
    settings = settings_or_exit()
    runtime = runtime_or_exit(settings)
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


@click.command("reconcile")
@click.option("--type", "wanted", multiple=True, help="Only this entity type (repeatable); default: every subscribed type.")
@click.option("--dry-run", is_flag=True, help="Report the drift, change nothing.")
def reconcile_command(wanted: tuple[str, ...], dry_run: bool) -> None:
    """Compare the mirror with Aiwyn's listing: repair missing and outdated rows, mark those Aiwyn no longer lists."""
    settings = settings_or_exit()
    runtime = runtime_or_exit(settings)
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


@click.command("sync-status")
def sync_status() -> None:
    """One line per subscribed type: never, backfilling <n> of about <m>, or complete <UTC time>; and its last reconcile."""
    settings = settings_or_exit()
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


@click.command("views")
@click.option("--dry-run", is_flag=True, help="Say what would change, change nothing.")
def views_command(dry_run: bool) -> None:
    """Create or replace the typed views (aiwyn_<type>) from Aiwyn's schema of every subscribed type."""
    settings = settings_or_exit()
    runtime = runtime_or_exit(settings, default_registry())
    types = _sync_types(runtime, ())
    try:
        changes = views.refresh(runtime.engine, runtime.listing, types, dry_run)
    except (SyncError, AiwynAPIError) as exc:
        raise click.ClickException(str(exc)) from exc
    for change in changes:
        click.echo(change.line() + (" (dry run)" if dry_run and change.action != "unchanged" else ""))


SYNC_COMMANDS = (backfill, reconcile_command, sync_status, views_command)
