"""shop_demo reads every HIDREAM_* setting (and DATABASE_URL, SECRET_KEY, DEBUG) from the
environment, with the right type; without SECRET_KEY (and with DEBUG) it makes a random key
once, in its var directory, that every process of the demo shares."""

import io
import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from hidream_models.conf import SETTINGS

ROOT = Path(__file__).resolve().parent.parent

SAMPLES = {
    str: "https://env.example.com",
    int: "4242",
    bool: "true",
    float: "12.5",
    list: "a.com,.b.com",
    dict: '{"catalog.product": "photo"}',
}


def _kind(spec):
    kinds = spec.kind if isinstance(spec.kind, tuple) else (spec.kind,)
    return float if float in kinds else kinds[0]


def test_every_hidream_setting_comes_from_the_environment(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HIDREAM_", "DJANGO_"))}
    for name, spec in SETTINGS.items():
        env[f"HIDREAM_{name}"] = SAMPLES[_kind(spec)]
    env.update(
        DJANGO_SETTINGS_MODULE="shop_demo.settings",
        DEBUG="false",
        SECRET_KEY="from-env",
        DATABASE_URL=f"sqlite:///{tmp_path / 'x.sqlite3'}",
    )
    script = (
        "import json, django; django.setup(); from django.conf import settings as s;"
        "from hidream_models.conf import SETTINGS;"
        "print(json.dumps({n: getattr(s, 'HIDREAM_' + n) for n in SETTINGS} | "
        "{'DEBUG': s.DEBUG, 'SECRET_KEY': s.SECRET_KEY,"
        " 'DB': str(s.DATABASES['default']['NAME'])}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    values = json.loads(out)
    expected = {
        str: SAMPLES[str],
        int: 4242,
        bool: True,
        float: 12.5,
        list: ["a.com", ".b.com"],
        dict: {"catalog.product": "photo"},
    }
    for name, spec in SETTINGS.items():
        assert values[name] == expected[_kind(spec)], name
    assert values["DEBUG"] is False and values["SECRET_KEY"] == "from-env"
    assert values["DB"].endswith("x.sqlite3")


# -- SECRET_KEY: one random key per demo, shared by all its processes -------------------------

OLD_FIXED_KEY = "django-insecure-demo-only-change-me"  # what every demo used before: known to all


def _demo_env(tmp_path, **overrides) -> dict[str, str]:
    dotenv = ROOT / ".env"  # the settings read it: its SECRET_KEY would fill the unset one
    if dotenv.exists() and "SECRET_KEY" in dotenv.read_text():
        pytest.skip("this checkout's .env sets SECRET_KEY, which wins over the demo's own")
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("HIDREAM_", "DJANGO_")) and key not in ("SECRET_KEY", "DEBUG")
    }
    env.update(
        DJANGO_SETTINGS_MODULE="shop_demo.settings",
        DEMO_VAR_DIR=str(tmp_path / "var"),  # not the repository's var/
        DATABASE_URL=f"sqlite:///{tmp_path / 'x.sqlite3'}",
        DEBUG="true",
    )
    env.update(overrides)
    return env


KEY_SCRIPT = "from django.conf import settings; print(settings.SECRET_KEY)"


def _key_of_a_new_process(env) -> str:
    done = subprocess.run(
        [sys.executable, "-c", KEY_SCRIPT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip()


def test_the_demo_makes_one_random_key_that_every_process_reads(tmp_path):
    env = _demo_env(tmp_path)
    # Processes starting together, as run_demo's children or `make demo` and a shell do.
    starting = [
        subprocess.Popen(
            [sys.executable, "-c", KEY_SCRIPT],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    keys = set()
    for proc in starting:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        keys.add(out.strip())
    later = _key_of_a_new_process(env)
    assert keys == {later}, "two processes of one demo disagree on SECRET_KEY"
    path = tmp_path / "var" / "secret_key"
    assert path.read_text().strip() == later
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # the demo's owner only

    # Random: not the old fixed key, long, and another demo gets another one.
    assert later != OLD_FIXED_KEY and not later.startswith("django-insecure")
    assert len(later) >= 50 and len(set(later)) >= 20
    assert _key_of_a_new_process(_demo_env(tmp_path / "other")) != later


def test_secret_key_from_the_environment_wins(tmp_path):
    assert _key_of_a_new_process(_demo_env(tmp_path, SECRET_KEY="from-env")) == "from-env"
    assert not (tmp_path / "var" / "secret_key").exists()


def test_without_debug_and_without_secret_key_the_demo_refuses_to_start(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", KEY_SCRIPT],
        cwd=ROOT,
        env=_demo_env(tmp_path, DEBUG="false"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0 and "SECRET_KEY" in done.stderr
    assert not (tmp_path / "var" / "secret_key").exists()


def test_run_demo_hands_its_key_to_every_child(settings, monkeypatch):
    """The web server checks the callback URLs the worker made: every child must get the
    key of the run_demo that started it."""
    from django.core.management import call_command
    from django.core.management.base import CommandError

    from shop_demo.catalog.management.commands import run_demo

    settings.SECRET_KEY = "the-key-run-demo-loaded-" + "k" * 40
    monkeypatch.delenv("SECRET_KEY", raising=False)
    envs = []

    class Child:
        returncode = 0

        def __init__(self, argv, env, **kwargs):
            envs.append(env)

        def poll(self):
            return 0  # exits at once: run_demo stops, as when a child dies

        def wait(self, timeout=None):
            return 0

    monkeypatch.setattr(run_demo.subprocess, "Popen", Child)
    monkeypatch.setattr(run_demo.subprocess, "run", lambda argv, env, **kw: envs.append(env))
    monkeypatch.setattr(run_demo, "call_command", lambda *args, **kwargs: None)
    monkeypatch.setattr(run_demo, "_port_free", lambda host, port: True)
    monkeypatch.setattr(run_demo, "_wait_for_port", lambda host, port, timeout: True)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with pytest.raises(CommandError, match="exited"):
            call_command("run_demo", stdout=io.StringIO())
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    assert len(envs) == 5  # simulator, template sync, worker, sync loop, web server
    assert {env.get("SECRET_KEY") for env in envs} == {settings.SECRET_KEY}
