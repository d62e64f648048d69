"""Settings, logging and the default subscriptions: the part every other part may import."""

from __future__ import annotations

import os

from config.settings import Settings, SettingsError, from_env


def load_settings() -> Settings:
    """The settings of this process, from its environment (the one place that reads it)."""
    return from_env(os.environ)


__all__ = ["Settings", "SettingsError", "from_env", "load_settings"]
