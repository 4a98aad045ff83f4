"""The Makefile finds a Python ≥ 3.12, and says clearly when there is none."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_explains_a_missing_python(tmp_path):
    # A PATH holding only an old python3 and no pyenv: nothing >= 3.12 can be found.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    old_python = bin_dir / "python3"
    old_python.write_text("#!/bin/sh\necho 'Python 3.11.0'\nexit 1\n")
    old_python.chmod(0o755)
    make = shutil.which("make")
    result = subprocess.run(
        [make, "-C", str(ROOT), "venv", f"VENV={tmp_path / 'venv'}"],
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path),
             "PYENV_ROOT": str(tmp_path / "no-pyenv")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    if result.returncode == 0:
        pytest.fail("make venv succeeded without any Python >= 3.12 on PATH")
    assert "needs Python 3.12 or newer" in result.stderr
    assert not (tmp_path / "venv").exists()


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.parametrize("node_modules", ["missing", "stale"])
def test_make_test_installs_axe_core_itself(tmp_path, node_modules):
    """`make test` does its own npm set-up: on a fresh clone (no node_modules) and when the
    lock file is newer than node_modules, it runs `npm ci` before pytest."""
    for name in ("Makefile", "package.json", "package-lock.json"):
        (tmp_path / name).write_bytes((ROOT / name).read_bytes())
    venv = tmp_path / ".venv"
    (venv / "bin").mkdir(parents=True)
    for name in ("requirements.txt", "requirements-dev.txt", "pyproject.toml"):
        (tmp_path / name).write_text("")
    (venv / ".installed").write_text("")  # the Python side counts as done
    if node_modules == "stale":
        stamp = tmp_path / "node_modules" / ".installed"
        stamp.parent.mkdir()
        stamp.write_text("")
        old = (tmp_path / "package-lock.json").stat().st_mtime - 60
        os.utime(stamp, (old, old))
    result = subprocess.run(
        [shutil.which("make"), "-n", "-C", str(tmp_path), "test"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    commands = result.stdout
    assert "npm ci" in commands
    assert commands.index("npm ci") < commands.index("-m pytest")
