"""The code stays clean by the rules in pyproject.toml (ruff: pyflakes, pycodestyle, isort, bugbear)."""

import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT


def test_ruff_finds_nothing():
    ruff = shutil.which("ruff") or (shutil.which("ruff", path=str(ROOT / ".venv" / "bin")))
    if ruff is None:
        pytest.skip("ruff is not installed (pip install -e .[dev])")
    proc = subprocess.run([ruff, "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:]


def test_every_module_imports_without_hardware():
    code = "import realtime.cli, realtime.pipeline, models.dmd, gui.window, bench.stages, bench.soak"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
