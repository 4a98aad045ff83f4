"""A scripted HTTP server on loopback, for faults the simulator does not (yet) produce.

Each request pops the next scripted reply: ``(status, headers, body, delay_seconds)``; when the
script is empty the last reply repeats. A path in ``routes`` always gets its own reply instead.
Requests are recorded as ``(method, path, headers, body)``. A reply whose headers hold
``TRUNCATE: n`` declares its whole length but sends only its first ``n`` bytes, then closes the
connection: an answer cut off on the way.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TRUNCATE = "X-Stub-Truncate-After"


class StubServer:
    """Serves scripted replies on 127.0.0.1; use as a context manager."""

    def __init__(self, replies, routes=None):
        self.replies = list(replies)
        self.routes = dict(routes or {})
        self.requests: list[tuple[str, str, dict, bytes]] = []
        self._lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with stub._lock:
                    stub.requests.append((self.command, self.path, dict(self.headers), body))
                    if self.path in stub.routes:
                        reply = stub.routes[self.path]
                    else:
                        reply = stub.replies.pop(0) if len(stub.replies) > 1 else stub.replies[0]
                status, headers, payload, delay = reply
                if delay:
                    time.sleep(delay)
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                headers = dict(headers)
                cut = headers.pop(TRUNCATE, None)
                try:
                    self.send_response(status)
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data if cut is None else data[: int(cut)])
                    if cut is not None:
                        self.wfile.flush()
                        self.close_connection = True
                        self.connection.shutdown(2)
                except (BrokenPipeError, ConnectionResetError, OSError):
                    pass

            do_GET = do_POST = _serve

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def envelope(result, code=0, message="Success"):
    return {"code": code, "message": message, "request_id": "req-stub", "result": result}


SUBMIT_OK = (
    200,
    {"Content-Type": "application/json"},
    envelope({"task_id": "remote-stub", "sub_task_ids": ["s1"]}),
    0,
)
