"""Aiwyn's API as this service calls it: one client, shared by the receiver and the workers.

Below both (it imports only ``config``), so the workers can read Aiwyn's records without
importing the web tier. What users may import: ``AiwynClient``, ``AiwynAPIError``,
``AiwynUnavailable``; ``aiwyn_api.client`` is internal otherwise.
"""

from __future__ import annotations

from aiwyn_api.client import AiwynAPIError, AiwynClient, AiwynUnavailable

__all__ = ["AiwynAPIError", "AiwynClient", "AiwynUnavailable"]
