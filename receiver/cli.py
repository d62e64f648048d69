"""The receiver's command line (``python -m receiver`` or ``aiwyn-receiver``): thin wrappers."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime

import click
import redis

from aiwyn_api.client import AiwynAPIError, AiwynClient
from config import Settings, SettingsError, load_settings
from config.logs import configure_logging
from config.subscriptions import load_subscriptions
from config.wire import wire_for
from receiver import probe as probing
from receiver import rejections as rejection_log
from receiver.app import connect_redis
from receiver.registration import Owner, RegistrationError, deactivate_ours, register_subscriptions
from receiver.secret_store import SecretStore


class SettingsProblem(click.ClickException):
    """A bad setting: one line on stderr, exit code 2, no traceback."""

    exit_code = 2


@click.group()
def cli() -> None:
    """Aiwyn webhook receiver: the web side's commands."""


def _connect() -> tuple[Settings, AiwynClient]:
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    settings.require_api()
    settings.require_public_url()
    return settings, AiwynClient(settings)


def _owner(settings: Settings) -> Owner:
    return Owner(settings.instance, settings.callback_url)


@cli.command()
@click.option("--dry-run", is_flag=True, help="Print the plan (create, update, deactivate) and change nothing.")
def register(dry_run: bool) -> None:
    """Reconcile the configured subscriptions with Aiwyn and share their secrets via Redis."""
    try:
        settings, client = _connect()
        specs = load_subscriptions(settings.subscriptions_file)
        connection = connect_redis(settings)
        store = SecretStore.for_settings(settings, connection, lambda: client)
        steps = register_subscriptions(client, connection, specs, _owner(settings), store, source=str(settings.subscriptions_file), dry_run=dry_run)
    except SettingsError as exc:
        raise SettingsProblem(str(exc)) from exc
    except RegistrationError as exc:
        raise click.ClickException(str(exc)) from exc
    except AiwynAPIError as exc:
        raise click.ClickException(f"Aiwyn API: {exc}") from exc
    except redis.RedisError as exc:
        raise click.ClickException(f"Redis at REDIS_URL: {type(exc).__name__}: {exc}") from exc
    if dry_run:
        click.echo("plan (dry run, nothing changed):")
    for step in steps:
        click.echo(step.describe())


@cli.command()
@click.option("--yes", is_flag=True, help="Confirm: Aiwyn stops delivering to this service.")
def uninstall(yes: bool) -> None:
    """Deactivate every subscription of this service (a deliberate uninstall, never on restart)."""
    if not yes:
        raise click.UsageError("this stops every delivery to this service; say --yes to confirm")
    try:
        settings, client = _connect()
        steps = deactivate_ours(client, _owner(settings))
    except SettingsError as exc:
        raise SettingsProblem(str(exc)) from exc
    except AiwynAPIError as exc:
        raise click.ClickException(f"Aiwyn API: {exc}") from exc
    for step in steps:
        click.echo(step.describe())
    click.echo(f"{len(steps)} subscription(s) deactivated")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="A JSON list of the checks, for scripts.")
def probe(as_json: bool) -> None:
    """Check each assumption about Aiwyn's API against the live API, reading only; exit 1 if any differs."""
    try:
        settings = load_settings()
        configure_logging(settings.log_level, settings.log_format)
        settings.require_api()
        checks = probing.probe(AiwynClient(settings), settings)
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps([check.to_json() for check in checks], indent=2))
    else:
        for check in checks:
            click.echo(check.line())
    if any(check.status == probing.DIFFERS for check in checks):
        sys.exit(1)


@cli.command()
@click.option("--limit", default=rejection_log.KEEP, show_default=True, help="How many, newest first.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object: the rejections and the hints.")
def rejections(limit: int, as_json: bool) -> None:
    """The last refused deliveries (kept by the web processes) and, where the pattern is clear, the fix."""
    try:
        settings = load_settings()
        kept = rejection_log.recent(connect_redis(settings), limit)
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from exc
    except redis.RedisError as exc:
        raise click.ClickException(f"Redis at REDIS_URL: {type(exc).__name__}: {exc}") from exc
    hints = rejection_log.diagnose(kept, wire_for(settings))
    if as_json:
        click.echo(json.dumps({"rejections": [r.to_json() for r in kept], "hints": hints}, indent=2))
        return
    for r in kept:
        when = datetime.fromtimestamp(r.at, UTC).strftime("%Y-%m-%d %H:%M:%S")
        click.echo(f"{when}  {r.status}  {r.reason}  id={r.event_id or '-'} subscription={r.subscription_id or '-'} bytes={r.body_bytes} headers={','.join(r.headers)}")
    click.echo(f"{len(kept)} rejected deliver{'y' if len(kept) == 1 else 'ies'} kept" + ("" if kept else " (none since Redis started)"))
    for hint in hints:
        click.echo(f"fix: {hint}")


def main() -> None:
    cli(prog_name="aiwyn-receiver")


if __name__ == "__main__":
    sys.exit(main())
