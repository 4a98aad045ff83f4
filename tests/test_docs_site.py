"""The documentation site (issue #15, point 8): MkDocs builds it strictly (a warning fails),
and its settings and REST API references, generated from the code, cover all of it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hidream_models.conf import SETTINGS

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    assert "WARNING" not in build.stderr, build.stderr[-3000:]
    return out


def test_the_settings_reference_lists_every_setting(site):
    page = (site / "settings" / "index.html").read_text(encoding="utf-8")
    missing = [name for name in SETTINGS if f"HIDREAM_{name}" not in page]
    assert missing == []


def test_the_api_reference_lists_every_operation(site):
    page = (site / "api" / "index.html").read_text(encoding="utf-8")
    for operation in ("POST /api/hidream/tasks/bulk/", "GET /api/hidream/tasks/{id}/"):
        assert operation in page, operation
    assert "Idempotency-Key" in page


def test_every_guide_and_the_changelog_are_pages(site):
    for page in ("deploying", "security", "reliability", "performance", "changelog"):
        assert (site / page / "index.html").exists(), page
