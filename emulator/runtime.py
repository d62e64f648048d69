"""The parts one running emulator is made of, reachable from a request as `current_runtime()`."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from .sender import Sender
from .settings import Settings
from .state import Store
from .tokens import TokenIssuer


@dataclass(frozen=True)
class Runtime:
    """Settings, state, token issuer and sender of one emulator app."""

    settings: Settings
    store: Store
    tokens: TokenIssuer
    sender: Sender


def current_runtime() -> Runtime:
    """The runtime of the app handling the current request."""
    return current_app.extensions["emulator"]
