"""``manage.py hidream_simulator``: run the offline HiDream stand-in until Ctrl-C.

A thin wrapper around :class:`hidream_models.simulator.HiDreamSimulator`; point
``HIDREAM_BASE_URL`` at the printed address. It listens on loopback only unless
``--allow-remote`` is given, because it fetches any URL it is sent and serves uploads back.
"""

import logging
import os
import sys

from django.core.management.base import BaseCommand, CommandError

from hidream_models.simulator import HiDreamSimulator

DEFAULT_TOKEN = "sim-token"  # noqa: S105 - the simulator's public default, not a secret


class Command(BaseCommand):
    help = (
        "Run a local HiDream e-commerce API simulator (loopback only) for the demo "
        "and the integration tests. Stop it with Ctrl-C."
    )
    # It touches neither models nor the database, so it should start even when the
    # project's checks fail (e.g. while setting HiDream up).
    requires_system_checks: list[str] = []

    def add_arguments(self, parser):
        parser.add_argument(
            "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
        )
        parser.add_argument(
            "--port",
            type=int,
            default=8765,
            help="port to listen on (default 8765; 0 picks a free one)",
        )
        parser.add_argument(
            "--token",
            default=None,
            help="the Bearer token clients must send (default: "
            f"$HIDREAM_API_TOKEN if set, else '{DEFAULT_TOKEN}')",
        )
        parser.add_argument(
            "--delay", type=float, default=2.0, help="seconds until a task finishes (default 2)"
        )
        parser.add_argument(
            "--no-callbacks",
            action="store_true",
            help="never call notify_url (to exercise polling)",
        )
        parser.add_argument(
            "--allow-remote", action="store_true", help="allow listening on a non-loopback address"
        )

    def handle(self, *args, **options):
        if options["delay"] < 0:
            raise CommandError("--delay must be 0 or more seconds")
        if options["token"]:
            token, source = options["token"], "--token"
        elif os.environ.get("HIDREAM_API_TOKEN"):
            token, source = os.environ["HIDREAM_API_TOKEN"], "$HIDREAM_API_TOKEN"
        else:
            token, source = DEFAULT_TOKEN, "the built-in default (see --help)"
        if options["verbosity"] >= 2:
            self._log_to_stderr(logging.DEBUG if options["verbosity"] >= 3 else logging.INFO)
        try:
            simulator = HiDreamSimulator(
                options["host"],
                options["port"],
                token,
                options["delay"],
                allow_remote=options["allow_remote"],
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        except OSError as exc:
            raise CommandError(
                f"cannot listen on {options['host']}:{options['port']}: {exc}"
            ) from exc
        simulator.send_callbacks = not options["no_callbacks"]
        # Never print the token itself, only where it came from.
        self.stdout.write(f"HiDream simulator listening on {simulator.base_url}")
        self.stdout.write(
            f"  token: from {source}; tasks finish after {options['delay']:g} s; "
            f"callbacks {'off' if options['no_callbacks'] else 'on'}"
        )
        self.stdout.write("  Press Ctrl-C to stop.")
        try:
            simulator.serve_forever()
        except KeyboardInterrupt:
            self.stdout.write("Stopping the simulator.")
        finally:
            simulator.stop()

    @staticmethod
    def _log_to_stderr(level: int) -> None:
        logger = logging.getLogger("hidream_models.simulator")
        logger.setLevel(level)
        if not logger.handlers:
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
            logger.addHandler(handler)
