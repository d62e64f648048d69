"""The web side: the webhook endpoint, signature verification, secrets, Aiwyn's API, registration.

What users may import: ``create_app`` (the app factory gunicorn runs), ``verify`` and
``VerificationError`` (the Flask-free verifier), ``AiwynClient`` and ``AiwynAPIError``.
Every module of the package is internal otherwise: it may change without notice.
"""

from __future__ import annotations

from aiwyn_api.client import AiwynAPIError, AiwynClient
from receiver.app import create_app
from receiver.signatures import VerificationError, verify

__all__ = ["AiwynAPIError", "AiwynClient", "VerificationError", "create_app", "verify"]
