"""The receiver's command line (``python -m receiver`` or ``aiwyn-receiver``): thin wrappers."""

from __future__ import annotations

import sys

import click
import redis

from config import SettingsError, load_settings
from config.logs import configure_logging
from config.subscriptions import load_subscriptions
from receiver.aiwyn_client import AiwynAPIError, AiwynClient
from receiver.app import connect_redis
from receiver.registration import register_subscriptions
from receiver.secret_store import SecretStore


@click.group()
def cli() -> None:
    """Aiwyn webhook receiver: the web side's commands."""


@cli.command()
def register() -> None:
    """Make the configured subscriptions exist at Aiwyn and share their secrets via Redis."""
    try:
        settings = load_settings()
        configure_logging(settings.log_level)
        settings.require_api()
        callback_url = settings.callback_url
        specs = load_subscriptions(settings.subscriptions_file)
        client = AiwynClient(settings)
        connection = connect_redis(settings)
        store = SecretStore.for_settings(settings, connection, lambda: client)
        results = register_subscriptions(client, connection, specs, callback_url, store)
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from exc
    except AiwynAPIError as exc:
        raise click.ClickException(f"Aiwyn API: {exc}") from exc
    except redis.RedisError as exc:
        raise click.ClickException(f"Redis at REDIS_URL: {type(exc).__name__}: {exc}") from exc
    for result in results:
        click.echo(f"{result.action:9} {result.subscription_id} {result.name} -> {callback_url}")


def main() -> None:
    cli(prog_name="aiwyn-receiver")


if __name__ == "__main__":
    sys.exit(main())
