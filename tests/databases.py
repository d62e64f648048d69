"""The databases the tests run against: SQLite always, PostgreSQL where TEST_POSTGRES_URL names a server.

Each test database is a throw-away one (``devstack.databases.throwaway_database``).
"""

from __future__ import annotations

import os

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "")
KINDS = ["sqlite", "postgres"]
