"""``manage.py hidream_sync [--loop]``: the polling fallback and sweep (see services.polling)."""

from __future__ import annotations

import signal
import time

from django.core.management.base import BaseCommand

from hidream_models.conf import hidream_settings
from hidream_models.services import sync_pass


class Command(BaseCommand):
    help = (
        "Poll HiDream for tasks whose callback is overdue, fail tasks past the deadline, and "
        "resume due retries. One pass, or --loop to keep going."
    )

    def add_arguments(self, parser):
        parser.add_argument("--loop", action="store_true", help="Keep running until stopped.")
        parser.add_argument(
            "--interval",
            type=float,
            default=None,
            help="Seconds between passes with --loop (default: HIDREAM_POLL_INTERVAL / 3, "
            "at least 1).",
        )

    def handle(self, *args, loop=False, interval=None, verbosity=1, **options):
        interval = interval or max(1.0, hidream_settings.POLL_INTERVAL / 3)
        stop = False

        def request_stop(signum, frame):
            nonlocal stop
            stop = True

        if loop:
            signal.signal(signal.SIGTERM, request_stop)
            signal.signal(signal.SIGINT, request_stop)
        while True:
            report = sync_pass()
            if verbosity >= 1 and (not loop or report.polled or report.expired or verbosity > 1):
                self.stdout.write(f"hidream_sync: {report}")
            if not loop:
                return
            deadline = time.monotonic() + interval
            while not stop and time.monotonic() < deadline:
                time.sleep(0.2)
            if stop:
                self.stdout.write("hidream_sync: stopped")
                return
