"""Handlers found through the ``aiwyn_receiver.handlers`` entry point group, as an installed package declares them."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from config import Settings
from config.settings import _FIELDS
from workers.cli import cli
from workers.discovery import ENTRY_POINT_GROUP, HandlerLoadError, load_registry


def install(site: Path, distribution: str, entry_points: dict[str, str], modules: dict[str, str]) -> None:
    """What pip leaves in site-packages: the modules, and a dist-info folder whose entry_points.txt importlib.metadata reads."""
    info = site / f"{distribution}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: 1.0\n")
    lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{lines}")
    for name, source in modules.items():
        (site / f"{name}.py").write_text(source)


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:  # the packages "installed" here are gone after the test
        if getattr(sys.modules[name], "__file__", "") and str(tmp_path) in sys.modules[name].__file__:
            del sys.modules[name]


GOOD = "from workers.handlers import handler\n\n@handler('client', name='crm_sync')\ndef sync(event, session):\n    pass\n"
BROKEN = "import os\n\nTOKEN = os.environ['EP_TEST_CRM_TOKEN_THAT_IS_NEVER_SET']\n"


def test_an_entry_point_registers_its_module_handlers(site: Path, settings: Settings) -> None:
    install(site, "ep_test_crm", {"crm": "ep_test_good_handlers"}, {"ep_test_good_handlers": GOOD})
    registry = load_registry(settings)
    assert [r.name for r in registry] == ["mirror", "crm_sync"]
    assert registry.get("crm_sync").entity_types == {"client"}
    assert [r.name for r in load_registry(settings, use_entry_points=False)] == ["mirror"]


def test_an_entry_point_that_fails_to_import_stops_the_start_naming_it(site: Path, settings: Settings) -> None:
    install(site, "ep_test_broken", {"billing": "ep_test_broken_handlers"}, {"ep_test_broken_handlers": BROKEN})
    expected = rf"handler entry point billing = ep_test_broken_handlers \({ENTRY_POINT_GROUP}\) failed to import: KeyError: .*NEVER_SET"
    with pytest.raises(HandlerLoadError, match=expected):
        load_registry(settings)


def test_an_entry_point_to_a_missing_module_stops_the_worker_command(site: Path, settings: Settings) -> None:
    install(site, "ep_test_missing", {"gone": "ep_test_module_not_there"}, {})
    env = dict.fromkeys(_FIELDS, "") | {"DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url, "AIWYN_RECEIVER_LOG_LEVEL": "WARNING",
                                        "AIWYN_RECEIVER_SECRETS_KEY": settings.secrets_key[0]}  # fmt: skip
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        result = CliRunner().invoke(cli, ["work", "--burst"], env=env)
    finally:
        root.handlers[:], root.level = handlers, level
    assert result.exit_code == 1
    assert "handler entry point gone = ep_test_module_not_there (aiwyn_receiver.handlers) failed to import: ModuleNotFoundError" in result.output


def test_a_bad_entry_point_stops_the_start_even_beside_a_good_one(site: Path, settings: Settings) -> None:
    install(site, "ep_test_crm", {"crm": "ep_test_good_handlers"}, {"ep_test_good_handlers": GOOD})
    install(site, "ep_test_other", {"other": "ep_test_good_handlers:sync"}, {})  # the same handler a second time
    with pytest.raises(HandlerLoadError, match=r"handler entry point other = ep_test_good_handlers:sync .*crm_sync is registered twice"):
        load_registry(settings)
