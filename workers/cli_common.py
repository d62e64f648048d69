"""What every workers command does first: settings and the runtime, or one clear line and an exit code."""

from __future__ import annotations

import click

from config import Settings, SettingsError, load_settings
from config.logs import configure_logging
from workers.discovery import HandlerLoadError
from workers.registry import HandlerRegistry
from workers.runtime import WorkerRuntime, start_runtime


class SettingsProblem(click.ClickException):
    """A bad setting: one line on stderr, exit code 2, no traceback."""

    exit_code = 2


def settings_or_exit() -> Settings:
    try:
        settings = load_settings()
    except SettingsError as exc:
        raise SettingsProblem(str(exc)) from exc
    configure_logging(settings.log_level, settings.log_format)
    return settings


def runtime_or_exit(settings: Settings, registry: HandlerRegistry | None = None) -> WorkerRuntime:
    try:
        return start_runtime(settings, registry)
    except HandlerLoadError as exc:
        raise click.ClickException(str(exc)) from exc
