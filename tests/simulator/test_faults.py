"""Fault injection of the HiDream simulator: each fault shows up over real HTTP on 127.0.0.1.

Nothing here needs Django settings; callback receivers are tiny local HTTP servers, and
no request leaves 127.0.0.1 (the private redirect is never followed).
"""

import base64
import io
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from PIL import Image

from hidream_models.simulator import HiDreamSimulator
from hidream_models.simulator.faults import Faults

TOKEN = "fault-token"
SUBMIT = "/api-pub/ec/v3/image/model/async"
RESULTS = SUBMIT + "/results"
HUMANS = "/api-pub/ec/v3/template/model/human"


def _jpeg() -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (48, 64), (30, 160, 60)).save(buffer, "JPEG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


PRODUCT = _jpeg()


@pytest.fixture(autouse=True)
def media_root():
    """Shadows the project conftest's fixture of that name, which needs Django settings."""


@pytest.fixture(scope="module")
def shared_sim():
    with HiDreamSimulator(token=TOKEN) as simulator:
        yield simulator


@pytest.fixture
def sim(shared_sim):
    shared_sim.reset()
    shared_sim.delay, shared_sim.send_callbacks = 0.0, True
    shared_sim.callback_retry_interval = 0.05
    return shared_sim


def call(sim, method, path, **kwargs) -> requests.Response:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    return requests.request(method, sim.base_url + path, headers=headers, timeout=10, **kwargs)


def post_submit(sim, **changes) -> requests.Response:
    return call(sim, "POST", SUBMIT, json={"image": PRODUCT, "prompt": "a model", **changes})


def submit(sim, **changes) -> dict:
    response = post_submit(sim, **changes)
    assert response.status_code == 200, response.text
    return response.json()


def wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("timed out waiting")


def finished_images(sim, task_id) -> list[str]:
    def done():
        items = call(sim, "GET", RESULTS, params={"task_id": task_id}).json()["result"]
        items = items["sub_task_results"]
        return all(item["task_completion"] == 1 for item in items) and items

    return [item["image"] for item in wait_for(done)]


def picture_urls(sim, count=1) -> list[str]:
    return finished_images(sim, submit(sim, image_count=count)["result"]["task_id"])


class Receiver:
    """A notify_url on 127.0.0.1 that records bodies and how many requests overlapped."""

    def __init__(self, pause=0.0):
        self.bodies, self.active, self.max_active = [], 0, 0
        self.pause, lock, receiver = pause, threading.Lock(), self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                with lock:
                    receiver.active += 1
                    receiver.max_active = max(receiver.max_active, receiver.active)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                time.sleep(receiver.pause)
                with lock:
                    receiver.bodies.append(body)
                    receiver.active -= 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def statuses(self, index) -> list[int]:
        return [item["task_status"] for item in self.bodies[index]["result"]["sub_task_results"]]


@pytest.fixture
def receiver():
    made = []

    def make(**kwargs):
        made.append(Receiver(**kwargs))
        return made[-1]

    yield make
    for item in made:
        item.server.shutdown()
        item.server.server_close()


# --- API faults ----------------------------------------------------------------------


def test_latency_applies_to_api_requests_and_separately_to_downloads(sim):
    preview = sim.preview_url("h-001") + "?width=64"
    requests.get(preview, timeout=5)  # rendered and cached before timing
    sim.set_faults(latency=0.4)
    started = time.monotonic()
    assert call(sim, "GET", HUMANS).status_code == 200
    assert time.monotonic() - started >= 0.4
    started = time.monotonic()
    assert requests.get(preview, timeout=5).status_code == 200
    assert time.monotonic() - started < 0.3  # downloads are not slowed by `latency`
    sim.set_faults(latency=0, result_latency=0.3)
    started = time.monotonic()
    requests.get(preview, timeout=5)
    assert time.monotonic() - started >= 0.3


def test_http_errors_for_the_next_requests_of_a_kind(sim):
    sim.fail_next(2, 502, kind="results")
    assert call(sim, "GET", HUMANS).status_code == 200  # another kind: untouched
    for _ in range(2):
        failed = call(sim, "GET", RESULTS, params={"task_id": "x"})
        assert failed.status_code == 502 and failed.headers["Content-Type"] == "text/html"
        assert "502 Bad Gateway" in failed.text
    assert call(sim, "GET", RESULTS, params={"task_id": "x"}).json()["code"] == 4004
    sim.fail_next(1, 503, body="json", retry_after=7)
    failed = post_submit(sim)
    assert failed.status_code == 503 and failed.headers["Retry-After"] == "7"
    assert failed.json()["code"] == 5030 and failed.json()["result"] is None
    assert sim.submissions == [] and sim.accepted_submits == 0
    assert sim.fault_events == [("fail_count", "results")] * 2 + [("fail_count", "submit")]
    assert submit(sim)["code"] == 0


def test_pictures_per_window_are_throttled_with_retry_after(sim):
    sim.throttle(images=3, window=1.0)
    assert submit(sim, image_count=2, prompt="")["code"] == 4001  # refused: not counted
    assert submit(sim, image_count=2)["code"] == 0
    refused = post_submit(sim, image_count=2)
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "1"
    assert refused.json()["code"] == 4290 and refused.json()["result"] is None
    assert submit(sim, image_count=1)["code"] == 0  # 3 pictures fit exactly
    assert post_submit(sim, image_count=4).status_code == 429  # never fits in 3
    assert (sim.throttled, sim.accepted_submits) == (2, 2)
    time.sleep(1.05)  # the window moves on
    assert submit(sim, image_count=2)["code"] == 0
    assert sim.accepted_submits == 3


def test_concurrent_requests_over_the_limit_get_429(sim):
    sim.set_faults(latency=0.5, max_concurrent=2)
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: call(sim, "GET", HUMANS), range(4)))
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [200, 200, 429, 429]
    assert all(a.headers["Retry-After"] == "1" for a in answers if a.status_code == 429)
    assert sim.max_concurrency_seen == 4 and sim.throttled == 2


def test_business_error_for_the_next_submit(sim):
    sim.business_error_next(1)
    payload = submit(sim)
    assert payload["code"] == 3005 and payload["message"] == "余额不足 / insufficient balance"
    assert payload["result"] is None and len(sim.submissions) == 1
    sim.business_error_next(1, code=4290, message="QPS limit")
    assert submit(sim)["message"] == "QPS limit"
    assert submit(sim)["code"] == 0 and sim.accepted_submits == 1


def test_dropped_before_accept_creates_no_task(sim):
    sim.drop_next(1, kind="submit")
    assert call(sim, "GET", HUMANS).status_code == 200
    with pytest.raises(requests.ConnectionError):
        post_submit(sim)
    assert sim.submissions == [] and sim.accepted_submits == 0
    assert sim.fault_events == [("drop_before_accept", "submit")]
    assert submit(sim)["code"] == 0


def test_dropped_after_accept_loses_the_reply_but_not_the_task(sim, receiver):
    hook = receiver()
    sim.drop_next(1, after_accept=True)
    with pytest.raises(requests.ConnectionError):
        post_submit(sim, notify_url=hook.url)
    assert sim.accepted_submits == 1 and len(sim.submissions) == 1
    wait_for(lambda: hook.bodies)  # the task ran and called back anyway
    task_id = hook.bodies[0]["result"]["task_id"]
    assert call(sim, "GET", RESULTS, params={"task_id": task_id}).json()["code"] == 0


def test_non_json_replies(sim):
    sim.garbage_next(1, kind="templates")
    garbled = call(sim, "GET", HUMANS)
    assert garbled.status_code == 200 and garbled.headers["Content-Type"].startswith("text/html")
    with pytest.raises(ValueError):
        garbled.json()
    assert call(sim, "GET", HUMANS).json()["code"] == 0


# --- callbacks -----------------------------------------------------------------------


def test_callback_lost(sim, receiver):
    hook = receiver()
    sim.set_faults(callback_mode="lost")
    finished_images(sim, submit(sim, notify_url=hook.url)["result"]["task_id"])
    time.sleep(0.2)
    assert hook.bodies == [] and sim.callback_attempts == []


def test_callback_duplicate(sim, receiver):
    hook = receiver()
    sim.set_faults(callback_mode="duplicate", callback_repeat=3)
    submit(sim, notify_url=hook.url)
    wait_for(lambda: len(hook.bodies) == 3)
    assert hook.bodies[0] == hook.bodies[1] == hook.bodies[2]
    assert sim.callback_attempts == [(hook.url, 200)] * 3


def test_callback_out_of_order(sim, receiver):
    hook = receiver()
    sim.set_faults(callback_mode="out_of_order")
    submit(sim, notify_url=hook.url, image_count=2)
    wait_for(lambda: len(hook.bodies) == 2)
    assert hook.statuses(0) == [1, 1] and hook.statuses(1) == [2, 2]
    stale = hook.bodies[1]["result"]["sub_task_results"]
    assert all(item["image"] == "" and item["task_completion"] < 1 for item in stale)


def test_callback_early_arrives_before_the_submit_reply(sim, receiver):
    hook = receiver()
    sim.delay = 5  # ignored: an early task is done at once
    sim.set_faults(callback_mode="early")
    payload = submit(sim, notify_url=hook.url)
    assert len(hook.bodies) == 1  # already there when the reply came
    assert hook.bodies[0]["result"]["task_id"] == payload["result"]["task_id"]
    assert hook.statuses(0) == [1]


def test_callback_concurrent_duplicates(sim, receiver):
    hook = receiver(pause=0.3)
    sim.set_faults(callback_mode="concurrent_duplicates", callback_repeat=3)
    submit(sim, notify_url=hook.url)
    wait_for(lambda: len(hook.bodies) == 3)
    assert hook.max_active >= 2
    assert len({body["request_id"] for body in hook.bodies}) == 1


# --- result files --------------------------------------------------------------------


def test_result_expired(sim):
    sim.set_faults(result_fault="expired")
    assert requests.get(picture_urls(sim)[0], timeout=5).status_code == 404
    sim.set_faults(expire_after_first=True)
    url = picture_urls(sim)[0]
    assert requests.get(url, timeout=5).status_code == 200
    assert requests.get(url, timeout=5).status_code == 404


def test_result_html_only_for_the_first_picture(sim):
    sim.set_faults(result_fault="html", result_fault_count=1)
    bad, good = (requests.get(url, timeout=5) for url in picture_urls(sim, 2))
    assert bad.status_code == 200 and bad.headers["Content-Type"].startswith("text/html")
    assert good.headers["Content-Type"] == "image/jpeg"
    assert Image.open(io.BytesIO(good.content)).format == "JPEG"


def test_result_oversize(sim):
    sim.set_faults(result_fault="oversize", oversize_bytes=3 * 2**20)
    url = picture_urls(sim)[0]
    picture = requests.get(url, timeout=10)
    assert picture.headers["Content-Length"] == str(3 * 2**20) == str(len(picture.content))
    assert Image.open(io.BytesIO(picture.content)).size == (768, 1024)  # a real JPEG inside
    sim.set_faults(oversize_bytes=Faults().oversize_bytes)
    with requests.get(url, timeout=10, stream=True) as big:  # hang up after the head
        assert big.headers["Content-Length"] == str(40 * 2**20)
        assert next(big.iter_content(1024)).startswith(b"\xff\xd8")
    sim.set_faults(oversize_bytes=2 * 2**20, result_content_length=False)
    unsized = requests.get(url, timeout=10)
    assert "Content-Length" not in unsized.headers and len(unsized.content) == 2 * 2**20


def test_result_decompression_bomb(sim):
    sim.set_faults(result_fault="bomb")
    bomb = requests.get(picture_urls(sim)[0], timeout=5)
    assert bomb.status_code == 200 and len(bomb.content) < 4096
    with pytest.raises(Image.DecompressionBombError):
        Image.open(io.BytesIO(bomb.content))


def test_result_slow(sim):
    sim.set_faults(result_fault="slow", slow_seconds=0.8)
    url = picture_urls(sim)[0]
    started = time.monotonic()
    picture = requests.get(url, timeout=5)
    assert time.monotonic() - started >= 0.7
    assert Image.open(io.BytesIO(picture.content)).format == "JPEG"


def test_result_redirect_to_a_private_address(sim):
    sim.set_faults(result_fault="redirect_private")
    answer = requests.get(picture_urls(sim)[0], timeout=5, allow_redirects=False)
    assert answer.status_code == 302
    assert answer.headers["Location"] == "http://10.0.0.1/x.jpg"


# --- the fault API itself ------------------------------------------------------------


def test_reset_clears_faults_and_counters(sim):
    sim.fail_next(5)
    sim.throttle(images=1, concurrent=1)
    call(sim, "GET", HUMANS)
    sim.set_faults(callback_mode="lost", result_fault="bomb")
    sim.reset()
    assert sim.faults == Faults()
    assert (sim.throttled, sim.accepted_submits, sim.max_concurrency_seen) == (0, 0, 0)
    assert sim.fault_events == []
    assert call(sim, "GET", HUMANS).status_code == 200


def test_set_faults_validates(sim):
    with pytest.raises(ValueError, match="fail_status"):
        sim.set_faults(fail_status=200)
    with pytest.raises(ValueError, match="callback_mode"):
        sim.set_faults(callback_mode="sometimes")
    with pytest.raises(TypeError):
        sim.set_faults(no_such_fault=1)
    with pytest.raises(ValueError, match="submits"):
        sim.drop_next(1, after_accept=True, kind="results")
    assert sim.faults == Faults()  # nothing half-applied


def test_command_options_set_the_faults(sim):
    from django.core.management import CommandError, call_command

    from hidream_models.management.commands.hidream_simulator import Command

    parser = Command().create_parser("manage.py", "hidream_simulator")
    argv = "--latency 0.2 --fail-next 2 --fail-status 502 --fail-kind submit --drop-next 1 "
    argv += "--drop-after-accept --throttle-images 10 --throttle-window 30 --max-concurrent 3 "
    argv += "--callback-mode early --result-fault slow --result-fault-count 1"
    changed = Command._set_faults(sim, vars(parser.parse_args(argv.split())))
    assert changed == {
        "latency": 0.2,
        "drop_after_accept": 1,
        "fail_count": 2,
        "fail_status": 502,
        "fail_kind": "submit",
        "max_concurrent": 3,
        "throttle_images": 10,
        "throttle_window": 30.0,
        "callback_mode": "early",
        "result_fault": "slow",
        "result_fault_count": 1,
    }
    with pytest.raises(CommandError, match="fail_status"):
        call_command(Command(), "--port", "0", "--fail-status", "200", stdout=io.StringIO())
