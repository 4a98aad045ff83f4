"""A small HTTP load generator, run as its own process: ``python -m benchmarks.loadgen``.

It POSTs the requests listed in a JSON file (``[[path, body], ...]``, used in turn) to one
host and port over new connections (``Connection: close``, as HiDream's callbacks and
gunicorn's sync workers do), with threads and ``http.client`` only, and prints one JSON
object of statistics on stdout.

Two modes:

- ``--mode max``: closed loop, ``--concurrency`` threads send back to back for ``--duration``
  seconds: the server's throughput.
- ``--mode rate``: open loop at ``--rate`` requests per second for ``--duration`` seconds.
  Request *i* is due at ``start + i / rate``; its latency is counted from that moment, so a
  server (or a generator) that falls behind shows it in the percentiles instead of quietly
  sending less (no "coordinated omission").
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import threading
import time


def percentile(values: list[float], p: float) -> float | None:
    """The p-th percentile (0-100), nearest rank; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


class Load:
    def __init__(self, host: str, port: int, requests: list[tuple[str, bytes]], timeout: float):
        self.host, self.port, self.requests, self.timeout = host, port, requests, timeout
        self.lock = threading.Lock()
        self.next_index = 0
        self.latencies: list[float] = []  # from the due time (rate) or the send (max), s
        self.service: list[float] = []  # from the send to the end of the reply, s
        self.statuses: dict[str, int] = {}
        self.first_send = self.last_end = None

    def take(self) -> int:
        with self.lock:
            index = self.next_index
            self.next_index += 1
            return index

    def send(self, index: int) -> tuple[str, float, float]:
        path, body = self.requests[index % len(self.requests)]
        started = time.perf_counter()
        try:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            conn.request(
                "POST",
                path,
                body=body,
                headers={"Content-Type": "application/json", "Connection": "close"},
            )
            response = conn.getresponse()
            response.read()
            status = str(response.status)
            conn.close()
        except (OSError, http.client.HTTPException) as exc:
            status = type(exc).__name__
        return status, started, time.perf_counter()

    def record(self, status: str, due: float, started: float, ended: float) -> None:
        with self.lock:
            self.statuses[status] = self.statuses.get(status, 0) + 1
            self.latencies.append(ended - due)
            self.service.append(ended - started)
            self.first_send = started if self.first_send is None else min(self.first_send, started)
            self.last_end = ended if self.last_end is None else max(self.last_end, ended)


def run_max(load: Load, concurrency: int, duration: float) -> float:
    stop_at = time.perf_counter() + duration

    def worker() -> None:
        while time.perf_counter() < stop_at:
            status, started, ended = load.send(load.take())
            load.record(status, started, started, ended)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    begin = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - begin


def run_rate(load: Load, rate: float, duration: float, threads_count: int) -> float:
    total = int(rate * duration)
    begin = time.perf_counter() + 0.05

    def worker() -> None:
        while True:
            index = load.take()
            if index >= total:
                return
            due = begin + index / rate
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            status, started, ended = load.send(index)
            load.record(status, due, started, ended)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - begin


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--requests-file", required=True)
    parser.add_argument("--mode", choices=("max", "rate"), required=True)
    parser.add_argument("--concurrency", type=int, default=4, help="threads (max mode)")
    parser.add_argument("--rate", type=float, default=200.0, help="requests/s (rate mode)")
    parser.add_argument("--threads", type=int, default=32, help="threads (rate mode)")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args(argv)

    with open(args.requests_file, encoding="utf-8") as fh:
        requests = [(path, body.encode()) for path, body in json.load(fh)]
    load = Load(args.host, args.port, requests, args.timeout)
    if args.mode == "max":
        elapsed = run_max(load, args.concurrency, args.duration)
    else:
        elapsed = run_rate(load, args.rate, args.duration, args.threads)
    done = len(load.latencies)
    ok = load.statuses.get("200", 0)
    span = (load.last_end - load.first_send) if done else 0.0
    stats = {
        "mode": args.mode,
        "requests": done,
        "ok": ok,
        "statuses": load.statuses,
        "elapsed_s": elapsed,
        "throughput_rps": ok / span if span else 0.0,
        "offered_rps": args.rate if args.mode == "rate" else None,
        "latency_ms": {
            f"p{p}": round(1000 * percentile(load.latencies, p), 2) if done else None
            for p in (50, 90, 95, 99)
        },
        "service_ms": {
            f"p{p}": round(1000 * percentile(load.service, p), 2) if done else None
            for p in (50, 90, 95, 99)
        },
        "max_latency_ms": round(1000 * max(load.latencies), 2) if done else None,
    }
    json.dump(stats, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
