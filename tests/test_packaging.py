"""The package as it would be published (issue #15, point 7): ``python -m build`` makes an
sdist and a wheel that ``twine check`` accepts; the wheel carries the app's data files and
``py.typed``; the sdist carries the LICENSE, the changelog and what the tests need.

Built without isolation (setuptools is pinned in requirements-dev.txt), so nothing is
downloaded: the test stays on this machine.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    build = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    return out


def _one(dist: Path, pattern: str) -> Path:
    (found,) = dist.glob(pattern)
    return found


def test_twine_accepts_both_archives(dist):
    check = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *map(str, dist.iterdir())],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_the_wheel_carries_the_apps_files_and_is_typed(dist):
    names = set(zipfile.ZipFile(_one(dist, "*.whl")).namelist())
    for expected in (
        "hidream_models/py.typed",
        "hidream_models/locale/zh_Hans/LC_MESSAGES/django.mo",
        "hidream_models/migrations/0010_claims_and_callback_attempts.py",
        "hidream_models/templates/hidream_models/admin/unpublish_and_delete.html",
    ):
        assert expected in names, expected
    assert not any(name.startswith(("tests/", "shop_demo/")) for name in names)
    metadata = next(name for name in names if name.endswith(".dist-info/METADATA"))
    text = zipfile.ZipFile(_one(dist, "*.whl")).read(metadata).decode()
    assert "License-Expression: MIT" in text
    assert any(name.endswith("licenses/LICENSE") for name in names)


def test_the_sdist_carries_the_license_the_changelog_and_the_tests(dist):
    with tarfile.open(_one(dist, "*.tar.gz")) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    for expected in (
        "LICENSE",
        "CHANGELOG.md",
        "tests/conftest.py",
        "tests/test_packaging.py",
        "shop_demo/settings.py",
        "requirements-dev.txt",
    ):
        assert expected in names, expected
    assert not any(name.startswith(("var/", "node_modules/", ".venv/")) for name in names)
