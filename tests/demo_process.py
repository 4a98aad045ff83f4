"""Start ``manage.py run_demo`` as the user's ``make demo`` would, for tests that need it all."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import wait_for

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_demo(tmp: Path, **env_overrides: str):
    """``run_demo`` on free ports with its own database and media in ``tmp``; yields
    ``{url, web, sim, proc, log}`` once it is serving, and stops it with SIGINT after."""
    web, sim = free_port(), free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("HIDREAM_", "DJANGO_", "DATABASE_URL", "MEDIA_"))
    }
    env.update(
        DJANGO_SETTINGS_MODULE="shop_demo.settings",
        DATABASE_URL=f"sqlite:///{tmp / 'demo.sqlite3'}",
        MEDIA_ROOT=str(tmp / "media"),
        SECRET_KEY="test-demo",
    )
    env.update(env_overrides)
    log_path = tmp / "demo.log"
    log = open(log_path, "w+")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "run_demo",
            "--port",
            str(web),
            "--simulator-port",
            str(sim),
            "--simulator-delay",
            "2",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(
            lambda: "Ctrl-C stops everything" in log_path.read_text() or proc.poll() is not None,
            timeout=60,
            interval=0.3,
            message="the demo to start",
        )
        assert proc.poll() is None, log_path.read_text()
        yield {
            "url": f"http://127.0.0.1:{web}",
            "web": web,
            "sim": sim,
            "proc": proc,
            "log": log_path,
        }
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
