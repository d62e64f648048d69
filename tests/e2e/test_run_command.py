"""The README's first command, as a newcomer runs it: everything starts, the demo lands, Ctrl-C stops all."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from devstack.services import ROOT, free_port, port_in_use
from tests.e2e.stack import base_env, wait_for

pytestmark = pytest.mark.e2e


def test_the_run_command_serves_the_demo_and_stops_everything(tmp_path: Path) -> None:
    port = free_port()
    env = base_env() | {"DATABASE_URL": f"sqlite:///{tmp_path / 'mirror.sqlite3'}"}
    output = tmp_path / "run.out"
    with open(output, "wb") as sink:
        run = subprocess.Popen([sys.executable, "-m", "devstack", "--port", str(port), "--var", str(tmp_path / "var")], env=env, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "The receiver is up" in output.read_text() or run.poll() is not None, timeout=90, what="the run command")
        text = output.read_text()
        assert run.poll() is None, text
        emulator = re.search(r"-m devstack\.demo --aiwyn (\S+)", text).group(1)
        demo = subprocess.run([sys.executable, "-m", "devstack.demo", "--aiwyn", emulator], env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        assert demo.returncode == 0, demo.stdout + demo.stderr
        assert "mirror: version=3 active=False" in demo.stdout
    finally:
        run.send_signal(signal.SIGINT)
        run.wait(60)
    emulator_port = int(emulator.rsplit(":", 1)[1])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (port_in_use(port) or port_in_use(emulator_port)):
        time.sleep(0.2)
    assert not port_in_use(port) and not port_in_use(emulator_port)
