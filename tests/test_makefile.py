"""The Makefile finds a Python ≥ 3.12, and says clearly when there is none."""

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
