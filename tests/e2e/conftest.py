"""End-to-end fixtures: one running stack per database kind, shared by the tests of a module."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from devstack.databases import throwaway_database
from tests.databases import KINDS, POSTGRES_URL
from tests.e2e.stack import Stack, start_stack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module", params=KINDS)
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if request.param == "postgres" and not POSTGRES_URL:
        pytest.skip("TEST_POSTGRES_URL is not set")
    directory = tmp_path_factory.mktemp(f"stack-{request.param}")
    with throwaway_database(request.param, directory) as database_url:
        running = start_stack(directory, database_url)
        try:
            yield running
        finally:
            running.stop()


@pytest.fixture(autouse=True)
def _no_faults(request: pytest.FixtureRequest) -> None:
    if "stack" in request.fixturenames:
        stack = request.getfixturevalue("stack")
        httpx.put(f"{stack.emulator_url}/_emulator/faults", json={"duplicate": False, "reorder": False, "delayMs": 0}, timeout=5)
