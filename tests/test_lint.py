"""The code stays clean by the rules in pyproject.toml (ruff: pyflakes, pycodestyle, isort, bugbear)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT


def test_ruff_finds_nothing():
    # the ruff of the environment running the tests (.venv, .venv-3.13, ...), else any on PATH
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (pip install -e .[dev])")
    proc = subprocess.run([ruff, "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:]


def test_every_module_imports_without_hardware():
    code = "import realtime.cli, realtime.pipeline, models.dmd, gui.window, bench.stages, bench.soak"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
