"""The code style CI enforces: ruff's lint rules and formatter, as configured in pyproject.toml ([tool.ruff])."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


def _ruff(*args: str) -> subprocess.CompletedProcess:
    # the environment's own ruff first (a venv's python run without activating it), then PATH
    beside = Path(sys.executable).parent / "ruff"
    exe = str(beside) if beside.exists() else shutil.which("ruff")
    exe = exe or pytest.skip("ruff is not installed (pip install -e '.[test]' installs it)")
    return subprocess.run([exe, *args], cwd=ROOT, capture_output=True, text=True)


def test_ruff_lint_passes():
    out = _ruff("check", "--no-cache", ".")
    assert out.returncode == 0, out.stdout + out.stderr


def test_ruff_format_is_applied():
    out = _ruff("format", "--check", "--no-cache", ".")
    assert out.returncode == 0, "run `ruff format .`:\n" + out.stdout + out.stderr


def test_the_lint_catches_a_late_binding_closure(tmp_path):
    """Negative control: the configured rules flag the bug class they are there for (B023)."""
    bad = tmp_path / "bad.py"
    bad.write_text("fns = []\nfor i in range(3):\n    fns.append(lambda: i)\n")
    out = _ruff("check", "--no-cache", "--config", str(ROOT / "pyproject.toml"), str(bad))
    assert out.returncode == 1 and "B023" in out.stdout, out.stdout
