"""``manage.py run_demo``: everything the demo shop needs, in one terminal (``make demo``).

Migrates, syncs templates, seeds, and runs as child processes: the HiDream simulator (when no
``HIDREAM_API_TOKEN`` is set; with a token the shop talks to ``HIDREAM_BASE_URL``), the task
worker, ``hidream_sync --loop`` and the web server, with the callback base URL pointed at the
web server. Ctrl-C (or SIGTERM) stops every child; if one dies, the others are stopped too.
Every child gets the same ``SECRET_KEY``: the callback tokens are HMACs keyed with it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

SIMULATOR_TOKEN = "demo-simulator-token"  # noqa: S105 - the offline simulator's, not a secret


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _wait_for_port(host: str, port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex((host, port)) == 0:
                return True
        time.sleep(0.1)
    return False


class Command(BaseCommand):
    help = "Run the demo shop: simulator, task worker, polling and web server (Ctrl-C stops)."
    requires_system_checks: list[str] = []

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000, help="web server port")
        parser.add_argument("--simulator-port", type=int, default=8765)
        parser.add_argument(
            "--simulator-delay", type=float, default=4.0, help="seconds per simulated task"
        )

    def handle(self, *args, host, port, simulator_port, simulator_delay, **options):
        env = os.environ.copy()
        use_simulator = not env.get("HIDREAM_API_TOKEN")
        needed = [port] + ([simulator_port] if use_simulator else [])
        for wanted in needed:
            if not _port_free(host, wanted):
                raise CommandError(
                    f"Port {wanted} on {host} is in use. Stop what runs there, or choose "
                    f"another with --port / --simulator-port."
                )
        site = f"http://{host}:{port}"
        if use_simulator:
            env["HIDREAM_API_TOKEN"] = SIMULATOR_TOKEN
            env["HIDREAM_BASE_URL"] = f"http://{host}:{simulator_port}"
        env.setdefault("HIDREAM_CALLBACK_BASE_URL", site)
        # One key for every process: the callback URLs the worker sends are checked by the
        # web server. Loading the settings made (or read) var/secret_key before this ran, or
        # took SECRET_KEY from the environment; the children get that very key, whatever
        # var directory or .env they would find.
        env["SECRET_KEY"] = settings.SECRET_KEY
        env.setdefault("HIDREAM_POLL_INTERVAL", "10")
        env.setdefault("HIDREAM_CALLBACK_GRACE", "15")
        env["PYTHONUNBUFFERED"] = "1"

        call_command("migrate", verbosity=0, interactive=False, skip_checks=True)

        manage = [sys.executable, "manage.py"]
        children: list[tuple[str, subprocess.Popen]] = []

        def start(name: str, *argv: str) -> None:
            # Each child gets its own process group so Ctrl-C reaches it once, from us.
            proc = subprocess.Popen([*manage, *argv], env=env, start_new_session=True)
            children.append((name, proc))

        def stop_all() -> None:
            for _name, proc in children:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 10
            for _name, proc in children:
                try:
                    proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

        stopping = False

        def on_signal(signum, frame):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        try:
            if use_simulator:
                start(
                    "simulator",
                    "hidream_simulator",
                    "--host",
                    host,
                    "--port",
                    str(simulator_port),
                    "--token",
                    SIMULATOR_TOKEN,
                    "--delay",
                    str(simulator_delay),
                )
                if not _wait_for_port(host, simulator_port, 15):
                    raise CommandError("The HiDream simulator did not start; see above.")
            # A child process, so it reads the settings (token, base URL) set above.
            subprocess.run([*manage, "hidream_sync_templates"], env=env, check=False)
            call_command("seed_demo", skip_checks=True)  # after the sync: presets use templates
            start(
                "worker",
                "db_worker",
                "--queue-name",
                "*",
                "--interval",
                "0.5",
                "--no-reload",
                "--no-startup-delay",
            )
            start("sync", "hidream_sync", "--loop", "--interval", "5")
            start("web", "runserver", f"{host}:{port}", "--noreload")
            if not _wait_for_port(host, port, 20):
                raise CommandError("The web server did not start; see above.")
            backend = "the HiDream simulator" if use_simulator else env.get("HIDREAM_BASE_URL")
            self.stdout.write(
                self.style.SUCCESS(
                    f"\n  Demo shop:   {site}/admin/   (login: admin / admin)\n"
                    f"  Products:    {site}/admin/catalog/product/\n"
                    f"  Tasks:       {site}/admin/hidream_models/modelimagetask/\n"
                    f"  HiDream:     {backend}\n"
                    f"  Ctrl-C stops everything.\n"
                )
            )
            while not stopping:
                for name, proc in children:
                    if proc.poll() is not None:
                        raise CommandError(f"The {name} process exited ({proc.returncode}).")
                time.sleep(0.3)
        finally:
            stop_all()
        self.stdout.write("Demo stopped.")
