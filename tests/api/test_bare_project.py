"""The API in a project with no ``REST_FRAMEWORK`` block (issue #15, point 2): a Token header
authenticates, the schema renders, pagination and throttles work; and a project's own
authentication classes are kept.

DRF and drf-spectacular read their settings once per process, so the bare project runs in a
process of its own (``bare_run.py`` under ``bare_settings.py``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from django.test import override_settings
from rest_framework.authentication import (
    BasicAuthentication,
    SessionAuthentication,
    TokenAuthentication,
)

from hidream_models.api.authentication import authentication_classes

ROOT = Path(__file__).resolve().parents[2]


def test_the_api_works_in_a_project_without_rest_framework_settings():
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    run = subprocess.run(
        [sys.executable, "-m", "tests.api.bare_run"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    found = json.loads(run.stdout.strip().splitlines()[-1])
    assert found["token_tasks"] == 200  # DRF's defaults would ignore the Token header: 403
    assert found["anonymous_tasks"] == 401
    assert found["anonymous_www_authenticate"] == "Token"
    assert found["session_tasks"] == 200
    assert found["schema"] == 200  # a 500 when the schema class came from DRF's default
    assert "/api/hidream/tasks/bulk/" in found["schema_paths"]
    assert {"201", "400", "429"} <= set(found["bulk_responses"])


def test_a_projects_own_authentication_classes_are_kept():
    jwt_like = {
        "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.BasicAuthentication"]
    }
    with override_settings(REST_FRAMEWORK=jwt_like):
        assert authentication_classes() == [BasicAuthentication]
    with override_settings(REST_FRAMEWORK={}):
        assert authentication_classes() == [TokenAuthentication, SessionAuthentication]
