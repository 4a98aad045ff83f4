"""``manage.py hidream_simulator``: run the offline HiDream stand-in until Ctrl-C.

A thin wrapper around :class:`hidream_models.simulator.HiDreamSimulator`; point
``HIDREAM_BASE_URL`` at the printed address. It listens on loopback only unless
``--allow-remote`` is given, because it fetches any URL it is sent and serves uploads back.
The "fault injection" options make it misbehave like a bad day at HiDream; they set the
fields of ``simulator.faults`` (see ``hidream_models/simulator/faults.py``). The "chaos"
options make it misbehave by seeded probability (``--chaos`` for issue #14's rates), and
``--report FILE`` writes its ledger of billed tasks when it stops (SIGINT or SIGTERM).
"""

import dataclasses
import logging
import os
import signal
import sys

from django.core.management.base import BaseCommand, CommandError

from hidream_models.simulator import HiDreamSimulator
from hidream_models.simulator.faults import (
    CALLBACK_MODES,
    CHAOS_RATES,
    PATH_KINDS,
    RESULT_FAULTS,
    Faults,
)

FAULT_OPTIONS = {  # option dest -> Faults field
    "latency": "latency",
    "result_latency": "result_latency",
    "fail_next": "fail_count",
    "fail_status": "fail_status",
    "fail_body": "fail_body",
    "fail_kind": "fail_kind",
    "fail_retry_after": "fail_retry_after",
    "garbage_next": "garbage_count",
    "garbage_kind": "garbage_kind",
    "drop_kind": "drop_kind",
    "throttle_images": "throttle_images",
    "throttle_window": "throttle_window",
    "max_concurrent": "max_concurrent",
    "business_error_next": "business_error_count",
    "business_error_code": "business_error_code",
    "business_error_message": "business_error_message",
    "callback_mode": "callback_mode",
    "callback_repeat": "callback_repeat",
    "result_fault": "result_fault",
    "result_fault_count": "result_fault_count",
    "expire_after_first": "expire_after_first",
    "oversize_bytes": "oversize_bytes",
    "slow_seconds": "slow_seconds",
    "chaos_seed": "chaos_seed",
}

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
        self._add_fault_arguments(parser)
        self._add_chaos_arguments(parser)

    @staticmethod
    def _add_fault_arguments(parser) -> None:
        defaults = Faults()
        kinds = {"choices": PATH_KINDS, "default": None}
        group = parser.add_argument_group(
            "fault injection",
            "Make the simulator misbehave. API requests are submit, results and templates "
            "calls; 'N' counts are used up one request at a time.",
        )
        add = group.add_argument
        add(
            "--latency",
            type=float,
            default=0.0,
            metavar="S",
            help="seconds added before answering every API request (default 0)",
        )
        add(
            "--result-latency",
            type=float,
            default=0.0,
            metavar="S",
            help="seconds added before serving result pictures and previews (default 0)",
        )
        add(
            "--fail-next",
            type=int,
            default=0,
            metavar="N",
            help="the next N API requests answer --fail-status with an error page",
        )
        add(
            "--fail-status",
            type=int,
            default=defaults.fail_status,
            metavar="CODE",
            help="HTTP status of --fail-next, 400-599 (default 503)",
        )
        add(
            "--fail-body",
            choices=("html", "json"),
            default="html",
            help="--fail-next body: an nginx-like HTML page (default) or the JSON envelope",
        )
        add("--fail-kind", **kinds, help="only fail requests of this kind (default: any)")
        add(
            "--fail-retry-after",
            type=int,
            default=None,
            metavar="S",
            help="send 'Retry-After: S' with the --fail-next replies",
        )
        add(
            "--garbage-next",
            type=int,
            default=0,
            metavar="N",
            help="the next N API requests answer 200 with a text/html page, not JSON",
        )
        add("--garbage-kind", **kinds, help="only garble requests of this kind (default: any)")
        add(
            "--drop-next",
            type=int,
            default=0,
            metavar="N",
            help="read the next N API requests, then close the socket without a reply "
            "(a dropped submit creates no task)",
        )
        add(
            "--drop-after-accept",
            action="store_true",
            help="with --drop-next: drop the replies of the next N submits instead, after "
            "their task was created (it finishes and calls back: a lost reply)",
        )
        add("--drop-kind", **kinds, help="only drop requests of this kind (default: any)")
        add(
            "--throttle-images",
            type=int,
            default=None,
            metavar="N",
            help="at most N pictures (sum of image_count) per --throttle-window; more gets "
            "HTTP 429 with Retry-After (default: no limit)",
        )
        add(
            "--throttle-window",
            type=float,
            default=defaults.throttle_window,
            metavar="S",
            help="the window of --throttle-images in seconds (default 60)",
        )
        add(
            "--max-concurrent",
            type=int,
            default=None,
            metavar="N",
            help="at most N API requests in flight; more gets HTTP 429 with Retry-After: 1 "
            "(default: no limit)",
        )
        add(
            "--business-error-next",
            type=int,
            default=0,
            metavar="N",
            help="the next N submits answer HTTP 200 with a business error code",
        )
        add(
            "--business-error-code",
            type=int,
            default=defaults.business_error_code,
            metavar="CODE",
            help="the code of --business-error-next (default 3005)",
        )
        add(
            "--business-error-message",
            default=defaults.business_error_message,
            metavar="TEXT",
            help=f"its message (default '{defaults.business_error_message}')",
        )
        add(
            "--callback-mode",
            choices=CALLBACK_MODES,
            default="normal",
            help="normal; lost: never sent; duplicate: delivered --callback-repeat times; "
            "out_of_order: a stale 'processing' callback after the final one; early: the "
            "task finishes at once and calls back before the submit reply; "
            "concurrent_duplicates: --callback-repeat deliveries in parallel",
        )
        add(
            "--callback-repeat",
            type=int,
            default=defaults.callback_repeat,
            metavar="K",
            help="deliveries for duplicate and concurrent_duplicates (default 3)",
        )
        add(
            "--result-fault",
            choices=RESULT_FAULTS,
            default=None,
            help="serve result pictures badly: expired (404), html (a web page), oversize "
            "(padded to --oversize-bytes), bomb (a PNG claiming 30000x30000 px), slow "
            "(trickled over --slow-seconds), redirect_private (302 to http://10.0.0.1/x.jpg)",
        )
        add(
            "--result-fault-count",
            type=int,
            default=None,
            metavar="K",
            help="only the first K pictures of each task are bad (default: all)",
        )
        add(
            "--expire-after-first",
            action="store_true",
            help="with --result-fault expired: each picture can be fetched once, then 404",
        )
        add(
            "--oversize-bytes",
            type=int,
            default=defaults.oversize_bytes,
            metavar="N",
            help="size of the oversize reply in bytes (default 40 MiB)",
        )
        add(
            "--slow-seconds",
            type=float,
            default=defaults.slow_seconds,
            metavar="S",
            help="how long the slow reply takes (default 5)",
        )

    @staticmethod
    def _add_chaos_arguments(parser) -> None:
        group = parser.add_argument_group(
            "chaos",
            "Faults by probability, drawn from a seeded random generator (see faults.py). "
            "Rates are probabilities from 0 to 1.",
        )
        add = group.add_argument
        add(
            "--chaos",
            action="store_true",
            help="issue #14's rates for every rate not given: "
            + ", ".join(f"{name} {rate:g}" for name, rate in CHAOS_RATES.items()),
        )
        add(
            "--chaos-seed",
            type=int,
            default=0,
            metavar="N",
            help="seed of the random generator (default 0)",
        )
        helps = {
            "server_error_rate": "API requests answered HTTP 500/502/503/504 (nothing created, "
            "but a submit answered 504 is handled first)",
            "throttle_rate": "API requests answered 429 with Retry-After: 1",
            "drop_rate": "API requests whose connection is closed without a reply; a submit's "
            "task is created (and billed) first",
            "drop_hang_rate": "dropped connections that first hang for 10 s (the caller's read "
            "timeout fires)",
            "callback_lost_rate": "accepted tasks whose callback is never sent",
            "callback_duplicate_rate": "callbacks delivered twice at once",
            "callback_reorder_rate": "callbacks followed by an older 'processing' snapshot",
        }
        for name, text in helps.items():
            add(
                "--" + name.replace("_", "-"),
                type=float,
                default=None,
                metavar="P",
                help=f"{text} (default 0, or {CHAOS_RATES[name]:g} with --chaos)",
            )
        add(
            "--report",
            default=None,
            metavar="FILE",
            help="when stopped, write the ledger of billed tasks and the fault counts to FILE "
            "as JSON (also served at /simulator/control/report)",
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
        try:
            faults = self._set_faults(simulator, options)
        except ValueError as exc:
            simulator.stop()
            raise CommandError(f"invalid fault option: {exc}") from exc
        previous = signal.signal(signal.SIGTERM, _interrupt)  # stop (and report) as on Ctrl-C
        try:
            # Never print the token itself, only where it came from.
            self.stdout.write(f"HiDream simulator listening on {simulator.base_url}")
            self.stdout.write(
                f"  token: from {source}; tasks finish after {options['delay']:g} s; "
                f"callbacks {'off' if options['no_callbacks'] else 'on'}"
            )
            if faults:
                self.stdout.write("  faults: " + ", ".join(f"{k}={v!r}" for k, v in faults.items()))
            self.stdout.write("  Press Ctrl-C to stop.")
            self.stdout.flush()  # a parent process reads the address from a pipe
            simulator.serve_forever()
        except KeyboardInterrupt:
            self.stdout.write("Stopping the simulator.")
        finally:
            signal.signal(signal.SIGTERM, previous)
            simulator.stop()
            if options["report"]:
                simulator.write_report(options["report"])

    @staticmethod
    def _set_faults(simulator: HiDreamSimulator, options: dict) -> dict:
        """Apply the fault options; return the fields that differ from the defaults."""
        changes = {field: options[dest] for dest, field in FAULT_OPTIONS.items()}
        for name, rate in CHAOS_RATES.items():
            given = options.get(name)
            changes[name] = given if given is not None else (rate if options.get("chaos") else 0.0)
        if options["drop_after_accept"]:
            if options["drop_kind"] not in (None, "submit"):
                raise ValueError("--drop-after-accept only applies to submits")
            changes["drop_after_accept"] = options["drop_next"]
        else:
            changes["drop_before_accept"] = options["drop_next"]
        faults = simulator.set_faults(**changes)
        defaults = Faults()
        return {
            item.name: getattr(faults, item.name)
            for item in dataclasses.fields(Faults)
            if getattr(faults, item.name) != getattr(defaults, item.name)
        }

    @staticmethod
    def _log_to_stderr(level: int) -> None:
        logger = logging.getLogger("hidream_models.simulator")
        logger.setLevel(level)
        if not logger.handlers:
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
            logger.addHandler(handler)


def _interrupt(signum, frame):
    raise KeyboardInterrupt
