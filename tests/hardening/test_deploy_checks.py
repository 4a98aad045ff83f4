"""``manage.py check --deploy`` with the demo's production settings: the app's own checks are
quiet when the configuration is right, and name the mistake when it is not."""

from __future__ import annotations

import os
import re
import secrets
import string
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MESSAGE_ID = re.compile(r"\(([\w.]+\.[A-Z]\d{3})\)")


def production_env(tmp_path: Path, **overrides: str | None) -> dict[str, str]:
    """A clean environment: nothing HIDREAM_*/DJANGO_*/DATABASE_* leaks in from the tests."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("HIDREAM_", "DJANGO_", "DATABASE_", "SECURE_", "LOG_"))
        and key not in ("DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "MEDIA_ROOT", "MEDIA_URL")
    }
    alphabet = string.ascii_letters + string.digits + "!@#%^&*(-_=+)"
    env.update(
        DJANGO_SETTINGS_MODULE="shop_demo.settings",
        DEBUG="false",
        SECRET_KEY="".join(secrets.choice(alphabet) for _ in range(60)),
        ALLOWED_HOSTS="shop.example.com",
        HIDREAM_API_TOKEN="x",
        HIDREAM_CALLBACK_BASE_URL="https://shop.example.com",
        DATABASE_URL=f"sqlite:///{tmp_path / 'deploy.sqlite3'}",
        MEDIA_ROOT=str(tmp_path / "media"),
    )
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def check_deploy(env: dict[str, str]) -> tuple[int, str, set[str]]:
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = result.stdout + result.stderr
    return result.returncode, output, set(MESSAGE_ID.findall(output))


def app_ids(ids: set[str]) -> set[str]:
    return {message_id for message_id in ids if message_id.startswith("hidream_models.")}


CASES = {
    "production": ({}, set()),
    "http-callback": ({"HIDREAM_CALLBACK_BASE_URL": "http://shop.example.com"}, {"W002"}),
    "no-token": ({"HIDREAM_API_TOKEN": None}, {"W001"}),
    "blank-token": ({"HIDREAM_API_TOKEN": "   "}, {"W001"}),
    "debug-http-callback": (
        {"DEBUG": "true", "HIDREAM_CALLBACK_BASE_URL": "http://shop.example.com"},
        set(),
    ),
    "bad-setting": ({"HIDREAM_MAX_ATTEMPTS": "0"}, {"E001"}),
}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """All cases at once, in parallel subprocesses (each takes about a second)."""

    def run(name):
        folder = tmp_path_factory.mktemp(name)
        return name, check_deploy(production_env(folder, **CASES[name][0]))

    with ThreadPoolExecutor(max_workers=len(CASES)) as pool:
        return dict(pool.map(run, CASES))


@pytest.mark.parametrize("name", CASES)
def test_app_messages_of_check_deploy(results, name):
    code, output, ids = results[name]
    expected = {f"hidream_models.{suffix}" for suffix in CASES[name][1]}
    assert "Traceback" not in output, output
    assert app_ids(ids) == expected, output
    if "E001" in CASES[name][1]:
        assert code != 0 and "HIDREAM_MAX_ATTEMPTS" in output
    else:
        assert code == 0, output


def test_production_settings_really_are_production_like(results):
    """The clean run still shows Django's own deploy checks were run (not a silent skip)."""
    code, output, ids = results["production"]
    assert code == 0
    assert "System check identified" in output or "no issues" in output, output
    assert not any(message_id.startswith("security.E") for message_id in ids), output


def test_w002_names_the_setting_and_the_fix(results):
    _code, output, _ids = results["http-callback"]
    assert "HIDREAM_CALLBACK_BASE_URL" in output and "https://" in output


def test_w001_names_the_setting_and_never_a_token(results):
    _code, output, _ids = results["no-token"]
    assert "HIDREAM_API_TOKEN" in output
    _code, clean, _ids = results["production"]
    assert "HIDREAM_API_TOKEN" not in clean
