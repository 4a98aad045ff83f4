"""``python -m benchmarks``: run the benchmarks and write the results (``make bench``).

Writes ``benchmarks/results.json`` and the results table of ``docs/performance.md``.
``--only 1,6`` runs some of them (their rows replace those of the previous results);
``--no-write`` only prints the table. The
exit status is 0 when the benchmarks ran, whether or not every goal holds: a benchmark is a
measurement, not a test (``--strict`` exits 1 when a goal does not hold).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
import traceback

from . import report
from .common import BenchRun, log

BENCHMARKS = {
    "1": "benchmarks.bulk_action",
    "2": "benchmarks.callback_load",
    "3": "benchmarks.pacing",
    "4": "benchmarks.callback_files",
    "5": "benchmarks.memory",
    "6": "benchmarks.task_list",
    "7": "benchmarks.celery_workers",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--only", default="", help="comma-separated goal numbers, e.g. 1,6")
    parser.add_argument("--strict", action="store_true", help="exit 1 if a goal does not hold")
    parser.add_argument(
        "--no-write", action="store_true", help="print the table; write no results or doc"
    )
    args = parser.parse_args(argv)
    chosen = [n.strip() for n in args.only.split(",") if n.strip()] or list(BENCHMARKS)
    unknown = [n for n in chosen if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")

    import importlib

    started = time.monotonic()
    load_before = os.getloadavg()[0]
    bench = BenchRun.open()
    rows: list[dict] = []
    failed: list[str] = []
    try:
        log(f"database: {bench.database}; simulator {bench.sim.base_url}; tmp {bench.tmp}")
        for number in chosen:
            module = importlib.import_module(BENCHMARKS[number])
            log(f"--- {module.__doc__.splitlines()[0]} (load average {os.getloadavg()[0]:.2f})")
            began = time.monotonic()
            try:
                rows.extend(module.run(bench))
            except Exception:
                traceback.print_exc()
                failed.append(number)
            log(f"goal {number} took {time.monotonic() - began:.1f} s")
    finally:
        if os.environ.get("BENCH_KEEP"):
            log(f"BENCH_KEEP is set: logs and files stay in {bench.tmp}")
            bench.tmp = bench.tmp / "kept-nothing-to-remove"
        bench.close()

    header = (
        f"Latest run: {datetime.date.today().isoformat()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, {bench.database.split(' (')[0]}; "
        f"load average {load_before:.2f} before it; the whole run took "
        f"{time.monotonic() - started:.0f} s."
    )
    if not args.no_write:
        report.write(rows, header, merge=chosen != list(BENCHMARKS))
    print()
    print(report.table(rows, header))
    if failed:
        log(f"benchmark(s) {', '.join(failed)} did not run to the end (see above)")
        return 2
    if args.strict and not all(item["holds"] for item in rows):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
