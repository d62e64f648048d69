"""The workers' command line (``python -m workers`` or ``aiwyn-workers``): thin wrappers."""

from __future__ import annotations

import json
import sys

import click
import redis
import sqlalchemy

from config import Settings, SettingsError, load_settings
from config.logs import configure_logging
from workers.discovery import HandlerLoadError
from workers.migrate import upgrade
from workers.models import MirroredRecord
from workers.registry import HandlerRegistry, default_registry
from workers.runtime import WorkerRuntime, start_runtime
from workers.worker import DrainWorker


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
def work(burst: bool) -> None:
    """Process queued deliveries in this process (RQ SimpleWorker: no fork per job)."""
    settings = _settings()
    runtime = _runtime(settings)
    try:
        runtime.redis.ping()
        runtime.batches.wake_if_needed()  # deliveries left from before this start
    except redis.RedisError as exc:
        raise click.ClickException(f"Redis at REDIS_URL: {type(exc).__name__}: {exc}") from exc
    worker = DrainWorker([runtime.queue], connection=runtime.redis, runtime=runtime)
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


def main() -> None:
    cli(prog_name="aiwyn-workers")


if __name__ == "__main__":
    sys.exit(main())
