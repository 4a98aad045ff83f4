"""``make demo``'s command, for real: child processes, HTTP, a staff walk, clean Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import wait_for
from tests.demo_process import running_demo

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.3)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def demo(tmp_path):
    with running_demo(tmp_path) as running:
        yield running


def _login(session: requests.Session, base: str) -> None:
    session.get(f"{base}/admin/login/", timeout=10)
    response = session.post(
        f"{base}/admin/login/?next=/admin/",
        data={
            "username": "admin",
            "password": "admin",
            "next": "/admin/",
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
        },
        timeout=10,
    )
    assert "/admin/logout/" in response.text, "login as admin / admin failed"


def test_demo_runs_the_whole_flow_and_stops_cleanly(demo):
    base, session = demo["url"], requests.Session()
    _login(session, base)
    products = session.get(f"{base}/admin/catalog/product/", timeout=10).text
    ids = re.findall(r'name="_selected_action" value="(\d+)"', products)
    assert len(ids) >= 12, "seed_demo should have made a dozen products"
    page = session.post(
        f"{base}/admin/catalog/product/",
        data={
            "action": "generate_model_images",
            "_selected_action": ids[:3],
            "index": 0,
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
        },
        timeout=10,
    ).text
    humans = re.findall(r'name="human_template" value="(\d+)"', page)
    scenes = re.findall(r'name="scene_template" value="(\d+)"', page)
    assert humans and scenes, "the demo syncs the simulator's templates on start"
    started = time.monotonic()
    response = session.post(
        f"{base}/admin/catalog/product/hidream-generate/",
        data={
            "ids": ids[:3],
            "mode": "template",
            "human_template": humans[0],
            "scene_template": scenes[0],
            "image_count": 2,
            "confirm": "Generate",
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
        },
        timeout=10,
    )
    assert "?batch=" in response.url
    task_list = response.url

    def pictures_shown():
        html = session.get(task_list, timeout=10).text
        return len(re.findall(r'class="hidream-thumb"', html)) >= 6

    wait_for(pictures_shown, timeout=30, interval=0.5, message="6 pictures in the task list")
    assert time.monotonic() - started < 30

    proc = demo["proc"]
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=20) == 0, demo["log"].read_text()
    assert "Demo stopped." in demo["log"].read_text()
    # Every child is gone: nothing listens on the web or simulator port any more.
    wait_for(
        lambda: not _port_open(demo["web"]) and not _port_open(demo["sim"]),
        timeout=5,
        message="the children to exit",
    )


def test_demo_refuses_a_busy_port(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "shop_demo.settings",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        }
        env.pop("HIDREAM_API_TOKEN", None)
        result = subprocess.run(
            [sys.executable, "manage.py", "run_demo", "--port", str(port)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode != 0
    assert f"Port {port}" in result.stderr and "in use" in result.stderr
