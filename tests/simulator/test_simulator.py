"""Tests of the HiDream simulator on its own: real HTTP on 127.0.0.1, real Pillow images.

Run with ``python -m pytest tests/simulator -p no:django``: nothing here needs Django
settings (the management command is called without them).
"""

import base64
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from PIL import Image

from hidream_models.simulator import HiDreamSimulator

TOKEN = "test-token-123"
SUBMIT = "/api-pub/ec/v3/image/model/async"
RESULTS = SUBMIT + "/results"
HUMANS = "/api-pub/ec/v3/template/model/human"
SCENES = "/api-pub/ec/v3/template/model/scene"
TEMPLATE = {"human_template_id": "h-001", "scene_template_id": "s-001"}
DROP = object()  # marks a field to remove from the base body


def make_jpeg(size=(64, 80), colour=(200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "JPEG")
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


PRODUCT = b64(make_jpeg())


@pytest.fixture(autouse=True)
def media_root():
    """Shadows the project conftest's fixture of that name, which needs pytest-django:
    these tests run with ``-p no:django`` and store nothing."""


@pytest.fixture(scope="module")
def shared_sim():
    with HiDreamSimulator(token=TOKEN) as simulator:
        yield simulator


@pytest.fixture
def sim(shared_sim):
    """One simulator for the module (fast), reset and re-tuned for each test."""
    shared_sim.reset()
    shared_sim.delay, shared_sim.send_callbacks = 0.3, True
    shared_sim.callback_retry_interval = 1.0
    return shared_sim


def call(sim, method, path, token=TOKEN, headers=None, **kwargs) -> requests.Response:
    headers = {**(headers or {}), **({"Authorization": f"Bearer {token}"} if token else {})}
    return requests.request(method, sim.base_url + path, headers=headers, timeout=10, **kwargs)


def submit(sim, **changes) -> dict:
    body = {"image": PRODUCT, "prompt": "a model in a red shirt"}
    for key, value in changes.items():
        if value is DROP:
            body.pop(key, None)
        else:
            body[key] = value
    response = call(sim, "POST", SUBMIT, json=body)
    assert response.status_code == 200
    return response.json()


def results(sim, task_id) -> list[dict]:
    payload = call(sim, "GET", RESULTS, params={"task_id": task_id}).json()
    assert payload["code"] == 0, payload
    return payload["result"]["sub_task_results"]


def wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


def final_results(sim, task_id) -> list[dict]:
    return wait_for(
        lambda: (
            (items := results(sim, task_id))
            and all(item["task_completion"] == 1 for item in items)
            and items
        )
    )


class Receiver:
    """A tiny notify_url endpoint on 127.0.0.1 that records what it is sent."""

    def __init__(self, status: int):
        self.status, self.bodies = status, []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers["Content-Length"])
                receiver.bodies.append(
                    (self.headers["Content-Type"], json.loads(self.rfile.read(length)))
                )
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    made = []

    def make(status=200):
        made.append(Receiver(status))
        return made[-1]

    yield make
    for item in made:
        item.close()


# --- auth and transport ------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "wrong-token"])
def test_api_needs_the_bearer_token(sim, token):
    for method, path in (("POST", SUBMIT), ("GET", RESULTS + "?task_id=x"), ("GET", HUMANS)):
        response = call(sim, method, path, token=token, json={})
        assert response.status_code == 401
        payload = response.json()
        assert payload["code"] != 0 and payload["result"] is None
        assert "token" in payload["message"]
        assert TOKEN not in response.text and "wrong-token" not in response.text


def test_not_a_json_object_is_http_400(sim):
    for data in (b"{not json", b"[1, 2]", b""):
        response = call(
            sim, "POST", SUBMIT, data=data, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 400, data
        assert response.json()["code"] != 0 and response.json()["result"] is None


def test_unknown_path_and_wrong_method(sim):
    assert call(sim, "GET", "/api-pub/ec/v3/nope").status_code == 404
    assert call(sim, "GET", SUBMIT).status_code == 405
    assert requests.get(sim.base_url + "/elsewhere", timeout=5).status_code == 404


def test_refuses_non_loopback_host():
    with pytest.raises(ValueError, match="allow-remote"):
        HiDreamSimulator(host="192.0.2.10")


def test_stop_ends_server_and_pending_timers(receiver):
    hook = receiver(200)
    sim = HiDreamSimulator(token=TOKEN, delay=30).start()
    assert repr(sim) == f"<HiDreamSimulator {sim.base_url}>"  # no token in it
    submit(sim, notify_url=hook.url)
    timers = list(sim._timers)
    sim.stop()
    sim.stop()  # idempotent
    assert timers and not any(timer.is_alive() for timer in timers)
    assert not sim._thread.is_alive()
    with pytest.raises(requests.ConnectionError):
        requests.get(sim.base_url + HUMANS, timeout=2)
    assert hook.bodies == []


def test_server_module_does_not_import_django():
    code = (
        "import sys, hidream_models.simulator\n"
        "assert not [m for m in sys.modules if m.split('.')[0] == 'django'], 'django imported'"
    )
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], cwd=root, check=True, timeout=30)  # noqa: S603


# --- submit validation (API-REFERENCE §2) ------------------------------------------

INVALID = [
    ({"image": DROP}, "image"),
    ({"image": 123}, "image"),
    ({"image": "data:image/jpeg;base64," + PRODUCT}, "data:"),
    ({"image": "not*base64!"}, "base64"),
    ({"image": b64(b"hello, this is not a picture")}, "not a picture"),
    ({"image": b64(make_jpeg((4097, 8)))}, "4096"),
    ({"image": "ftp://127.0.0.1/shirt.jpg"}, "http"),
    ({"template": TEMPLATE}, "exactly one"),
    ({"prompt": DROP}, "exactly one"),
    ({"prompt": DROP, "template": "h-001"}, "template"),
    ({"prompt": DROP, "template": {"scene_template_id": "s-001"}}, "human_template_id"),
    ({"prompt": DROP, "template": {"human_template_id": "h-001"}}, "scene_template_id"),
    ({"prompt": DROP, "template": {**TEMPLATE, "human_template_id": 1}}, "human_template_id"),
    ({"prompt": DROP, "template": {**TEMPLATE, "human_template_id": "h-999"}}, "h-999"),
    ({"prompt": DROP, "template": {**TEMPLATE, "scene_template_id": "s-999"}}, "s-999"),
    (
        {"prompt": DROP, "template": {**TEMPLATE, "custom_human_template": "yes"}},
        "custom_human_template",
    ),
    ({"prompt": "x" * 501}, "500"),
    ({"prompt": 42}, "prompt"),
    ({"prompt": "   "}, "prompt"),
    ({"image_count": 0}, "image_count"),
    ({"image_count": 5}, "image_count"),
    ({"image_count": "2"}, "image_count"),
    ({"image_count": True}, "image_count"),
    ({"image_count": 1.5}, "image_count"),
    ({"notify_url": "ftp://127.0.0.1/hook"}, "notify_url"),
    ({"notify_url": 7}, "notify_url"),
    ({"mask": 7}, "mask"),
]


@pytest.mark.parametrize(("changes", "expected"), INVALID)
def test_submit_rules_give_business_errors(sim, changes, expected):
    payload = submit(sim, **changes)
    assert payload["code"] == 4001
    assert payload["result"] is None
    assert expected in payload["message"]
    assert len(sim.submissions) == 1  # received, even though refused


def test_image_url_is_fetched_and_checked(sim):
    ok = submit(sim, image=sim.preview_url("h-002"))  # a PNG on the simulator itself
    assert ok["code"] == 0
    missing = submit(sim, image=f"{sim.base_url}/simulator/results/nothing.jpg")
    assert missing["code"] == 4001 and "HTTP 404" in missing["message"]
    not_image = submit(sim, image=f"{sim.base_url}{HUMANS}")  # answers 401 JSON, no image
    assert not_image["code"] == 4001


def test_limits_themselves_are_accepted(sim):
    payload = submit(
        sim,
        image=b64(make_jpeg((4096, 16))),
        prompt="p" * 500,
        image_count=4,
        notify_url="http://127.0.0.1:9/hook",
        mask="m",
        extra_field={"x": 1},
    )
    assert payload["code"] == 0, payload["message"]
    assert payload["message"] == "请求成功"
    assert len(payload["result"]["sub_task_ids"]) == 4
    sim.send_callbacks = False
    template = submit(sim, prompt=DROP, template={**TEMPLATE, "custom_human_template": False})
    assert template["code"] == 0


def test_base64_with_line_breaks_is_accepted(sim):
    wrapped = "\n".join(PRODUCT[i : i + 76] for i in range(0, len(PRODUCT), 76))
    assert submit(sim, image=wrapped)["code"] == 0


def test_concurrent_submissions(sim):
    answers = []
    threads = [threading.Thread(target=lambda: answers.append(submit(sim))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({answer["result"]["task_id"] for answer in answers}) == 8
    assert len(sim.submissions) == 8


def test_submissions_keep_a_summary_not_the_image(sim):
    submit(sim, image_count=2)
    record = sim.submissions[-1]
    assert record["image_count"] == 2 and record["prompt"] == "a model in a red shirt"
    assert PRODUCT not in record["image"] and len(record["image"]) < 100


# --- task life cycle ---------------------------------------------------------------


def test_task_queues_processes_and_finishes_with_a_real_jpeg():
    with HiDreamSimulator(token=TOKEN, delay=1.0) as sim:
        started = time.monotonic()
        payload = submit(sim, image_count=2)
        task_id, sub_ids = payload["result"]["task_id"], payload["result"]["sub_task_ids"]
        first = results(sim, task_id)
        assert [item["sub_task_id"] for item in first] == sub_ids
        assert {item["task_status"] for item in first} == {0}
        assert all(item["task_completion"] == 0 and item["image"] == "" for item in first)
        time.sleep(max(0.0, started + 0.55 - time.monotonic()))
        middle = results(sim, task_id)
        assert {item["task_status"] for item in middle} == {2}
        assert all(0 < item["task_completion"] < 1 for item in middle)
        done = final_results(sim, task_id)
        for item in done:
            assert item["task_status"] == 1 and item["description"] == ""
            assert item["image"].startswith(sim.base_url)
            picture = requests.get(item["image"], timeout=5)  # no token: like a CDN
            assert picture.status_code == 200
            assert picture.headers["Content-Type"] == "image/jpeg"
            image = Image.open(io.BytesIO(picture.content))
            assert image.format == "JPEG" and image.size == (768, 1024)


def test_result_pictures_differ_and_wear_the_product(sim):
    sim.delay = 0
    red = submit(sim, image_count=3)["result"]["task_id"]
    blue = submit(sim, image=b64(make_jpeg(colour=(20, 40, 220))))["result"]["task_id"]
    other_prompt = submit(sim, prompt="a man on a beach")["result"]["task_id"]
    other_template = submit(
        sim, prompt=DROP, template={"human_template_id": "h-002", "scene_template_id": "s-003"}
    )["result"]["task_id"]

    def pictures(task_id):
        return [
            requests.get(item["image"], timeout=5).content for item in final_results(sim, task_id)
        ]

    red_pictures = pictures(red)
    assert len(set(red_pictures)) == 3
    first = Image.open(io.BytesIO(red_pictures[0])).convert("RGB")
    blue_first = Image.open(io.BytesIO(pictures(blue)[0])).convert("RGB")
    # Sub-task 1 stands in the middle; its torso shows the submitted picture.
    red_px, blue_px = first.getpixel((384, 495)), blue_first.getpixel((384, 495))
    assert red_px[0] > 150 and red_px[2] < 100
    assert blue_px[2] > 150 and blue_px[0] < 100
    corner = first.getpixel((10, 10))
    assert Image.open(io.BytesIO(pictures(other_prompt)[0])).getpixel((10, 10)) != corner
    assert Image.open(io.BytesIO(pictures(other_template)[0])).getpixel((10, 10)) != corner


def test_forced_statuses_fail_chosen_sub_tasks(sim):
    sim.delay = 0
    sim.forced_statuses = [1, 3, 4, 1005]
    items = final_results(sim, submit(sim, image_count=4)["result"]["task_id"])
    assert [item["task_status"] for item in items] == [1, 3, 4, 1005]
    assert items[0]["image"] and items[0]["description"] == ""
    for item in items[1:]:
        assert item["image"] == "" and item["description"]
    assert "moderation" in items[2]["description"]
    failed = f"{sim.base_url}/simulator/results/{items[1]['sub_task_id']}.jpg"
    assert requests.get(failed, timeout=5).status_code == 404


def test_unknown_or_missing_task_id(sim):
    unknown = call(sim, "GET", RESULTS, params={"task_id": "no-such-task"})
    assert unknown.status_code == 200
    assert unknown.json()["code"] == 4004 and "not found" in unknown.json()["message"]
    assert call(sim, "GET", RESULTS).json()["code"] == 4001


def test_reset_forgets_everything(sim):
    sim.forced_statuses = [3]
    task_id = submit(sim)["result"]["task_id"]
    sim.reset()
    assert sim.submissions == [] and sim.callback_attempts == []
    assert sim.forced_statuses is None
    assert call(sim, "GET", RESULTS, params={"task_id": task_id}).json()["code"] == 4004


# --- templates and previews --------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "fields"),
    [
        (HUMANS, {"id", "name_zh", "name_en", "gender", "show_image"}),
        (SCENES, {"id", "name_zh", "name_en", "show_image", "scenes_type", "region"}),
    ],
)
def test_template_lists_page(sim, path, fields):
    ids = []
    for page in (1, 2):
        payload = call(sim, "GET", path, params={"page_index": page, "page_size": 4}).json()
        assert payload["code"] == 0
        result = payload["result"]
        assert result["total_count"] == 6 and result["total_page"] == 2
        assert len(result["templates"]) == (4 if page == 1 else 2)
        for item in result["templates"]:
            assert fields <= item.keys()
            assert item["show_image"].startswith(sim.base_url)
        ids += [item["id"] for item in result["templates"]]
    assert len(set(ids)) == 6
    everything = call(sim, "GET", path).json()["result"]
    assert [item["id"] for item in everything["templates"]] == ids
    assert everything["total_page"] == 1
    for params in ({"page_size": 101}, {"page_index": 0}, {"page_size": "x"}):
        payload = call(sim, "GET", path, params=params).json()
        assert payload["code"] == 4001 and payload["result"] is None


def test_template_kinds_and_values(sim):
    humans = call(sim, "GET", HUMANS).json()["result"]["templates"]
    scenes = call(sim, "GET", SCENES).json()["result"]["templates"]
    assert {item["gender"] for item in humans} == {"Woman", "Man"}
    assert {item["scenes_type"] for item in scenes} == {"indoor scenes", "outdoor scenes"}


def test_previews_resize_and_differ(sim):
    full = requests.get(sim.preview_url("h-001"), timeout=5)
    assert full.status_code == 200 and full.headers["Content-Type"] == "image/png"
    assert Image.open(io.BytesIO(full.content)).size == (768, 1024)
    small = requests.get(sim.preview_url("s-002") + "?width=512", timeout=5)
    assert Image.open(io.BytesIO(small.content)).size == (512, 683)
    assert requests.get(sim.preview_url("h-002"), timeout=5).content != full.content
    assert requests.get(sim.preview_url("x-404"), timeout=5).status_code == 404
    assert requests.get(sim.preview_url("h-001") + "?width=0", timeout=5).status_code == 400
    assert requests.get(sim.preview_url("h-001") + "?width=%C2%B2", timeout=5).status_code == 400


# --- callbacks (API-REFERENCE §5) -------------------------------------------------


def test_callback_delivered_once_on_200(sim, receiver):
    hook = receiver(200)
    task_id = submit(sim, notify_url=hook.url, image_count=2)["result"]["task_id"]
    wait_for(lambda: hook.bodies)
    time.sleep(0.3)  # no second delivery after a 200
    assert sim.callback_attempts == [(hook.url, 200)]
    content_type, body = hook.bodies[0]
    assert len(hook.bodies) == 1 and content_type == "application/json"
    assert body["code"] == 0 and body["result"]["task_id"] == task_id
    assert body["result"]["sub_task_results"] == results(sim, task_id)


def test_callback_retried_three_times_one_second_apart(sim, receiver):
    assert (sim.callback_timeout, sim.callback_retry_interval) == (5.0, 1.0)
    hook = receiver(500)
    started = time.monotonic()
    submit(sim, notify_url=hook.url)
    wait_for(lambda: len(sim.callback_attempts) >= 3, timeout=6)
    assert time.monotonic() - started >= 2.0  # two 1 s pauses between the 3 attempts
    time.sleep(0.3)
    assert sim.callback_attempts == [(hook.url, 500)] * 3
    assert len(hook.bodies) == 3


def test_unreachable_callback_records_the_error(sim, receiver):
    sim.callback_retry_interval = 0.05
    hook = receiver(200)
    hook.close()  # nobody listens there any more
    submit(sim, notify_url=hook.url)
    wait_for(lambda: len(sim.callback_attempts) >= 3)
    assert all(isinstance(outcome, str) and outcome for _, outcome in sim.callback_attempts)


def test_no_callback_when_disabled(sim, receiver):
    sim.send_callbacks = False
    hook = receiver(200)
    task_id = submit(sim, notify_url=hook.url)["result"]["task_id"]
    final_results(sim, task_id)  # finished: polling still works
    time.sleep(0.4)
    assert hook.bodies == [] and sim.callback_attempts == []


# --- the management command --------------------------------------------------------

COMMAND = """
from django.core.management import call_command
from hidream_models.management.commands.hidream_simulator import Command
call_command(Command(), "--port", "0", "--delay", "0.1")
"""


def test_command_prints_url_not_token_and_stops_on_ctrl_c():
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "HIDREAM_API_TOKEN": "env-secret-456", "PYTHONPATH": str(root)}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    process = subprocess.Popen(  # noqa: S603 - a fixed argv: this interpreter, our script
        [sys.executable, "-c", COMMAND],
        cwd=root,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        line = process.stdout.readline()
        assert "listening on http://127.0.0.1:" in line
        base_url = line.split("listening on ")[1].strip()
        answer = requests.get(
            base_url + HUMANS, timeout=5, headers={"Authorization": "Bearer env-secret-456"}
        )
        assert answer.json()["code"] == 0
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert "env-secret-456" not in line + out + err
    assert "Stopping" in out


def test_command_refuses_remote_host_without_flag():
    from django.core.management import CommandError, call_command

    from hidream_models.management.commands.hidream_simulator import Command

    with pytest.raises(CommandError, match="--allow-remote"):
        call_command(Command(), "--host", "192.0.2.10", stdout=io.StringIO())
