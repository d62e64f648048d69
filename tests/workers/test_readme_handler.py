"""The README's "Write your own handler" example, pasted as a user would, and its test run."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from devstack.services import ROOT


def test_the_readme_handler_example_and_its_test_pass(tmp_path: Path) -> None:
    section = (ROOT / "README.md").read_text().split("## Write your own handler", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n# (\S+)\n(.*?)```", section, re.S)
    assert [name for name, _ in blocks] == ["crm_sync/handlers.py", "tests/test_crm_sync.py"]
    for name, code in blocks:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(code)
    (tmp_path / "crm_sync" / "__init__.py").write_text("")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_crm_sync.py"],
        cwd=tmp_path, env={"PYTHONPATH": f"{tmp_path}:{ROOT}", "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
