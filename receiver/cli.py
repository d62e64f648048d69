"""The receiver's command line (``python -m receiver`` or ``aiwyn-receiver``): thin wrappers."""

from __future__ import annotations

import sys

import click
import redis

from config import Settings, SettingsError, load_settings
from config.logs import configure_logging
from config.subscriptions import load_subscriptions
from receiver.aiwyn_client import AiwynAPIError, AiwynClient
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
    configure_logging(settings.log_level)
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


def main() -> None:
    cli(prog_name="aiwyn-receiver")


if __name__ == "__main__":
    sys.exit(main())
