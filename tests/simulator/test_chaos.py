"""The simulator's chaos faults (by seeded probability) and its ledger of billed tasks, over
real HTTP on 127.0.0.1: what ``make test-chaos`` builds on.

Nothing here needs Django settings except the command's own test.
"""

import base64
import hashlib
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import requests

from hidream_models.simulator import HiDreamSimulator
from hidream_models.simulator.faults import CHAOS_RATES, Faults
from hidream_models.simulator.ledger import caller_reference
from tests.simulator.test_faults import (
    HUMANS,
    PRODUCT,
    SUBMIT,
    TOKEN,
    Receiver,
    call,
    finished_images,
    post_submit,
    submit,
    wait_for,
)

ROOT = Path(__file__).resolve().parents[2]


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


def outcome(sim) -> str:
    """One templates request, summed up: its status code, or "dropped"."""
    try:
        return str(call(sim, "GET", HUMANS).status_code)
    except requests.ConnectionError:
        return "dropped"


def test_request_faults_follow_the_seed_and_the_rates(sim):
    rates = {"server_error_rate": 0.3, "throttle_rate": 0.2, "drop_rate": 0.1}
    runs = []
    for seed in (7, 7, 8):
        sim.reset()
        sim.set_faults(chaos_seed=seed, **rates)
        runs.append([outcome(sim) for _ in range(200)])
    assert runs[0] == runs[1], "the same seed must give the same sequence of faults"
    assert runs[0] != runs[2]
    seen = runs[2]  # the counters are the last run's
    errors = sum(status in ("500", "502", "503", "504") for status in seen)
    # Binomial(200, p): these bounds are more than 4 standard deviations wide.
    assert 30 <= errors <= 90
    assert 15 <= seen.count("429") <= 65
    assert 3 <= seen.count("dropped") <= 40
    assert seen.count("200") == 200 - errors - seen.count("429") - seen.count("dropped")
    counts = sim.chaos_counts
    assert counts["server_error:templates"] == errors
    assert counts["throttle:templates"] == seen.count("429")
    assert counts["drop:templates"] == seen.count("dropped")


def test_a_dropped_submit_is_billed_and_calls_back_but_its_reply_is_lost(sim, receiver):
    hook = receiver()
    app_task = str(uuid.uuid4())
    sim.set_faults(drop_rate=1.0)
    with pytest.raises(requests.ConnectionError):
        post_submit(sim, notify_url=f"{hook.url}/callback/{app_task}/token/", image_count=2)
    wait_for(lambda: hook.bodies)  # the task ran and called back anyway
    (entry,) = sim.ledger.entries()
    assert entry["reply"] == "dropped"
    assert entry["caller_ref"] == app_task
    assert entry["task_id"] == hook.bodies[0]["result"]["task_id"]
    assert len(entry["sub_task_ids"]) == 2
    assert sim.accepted_submits == 1 and sim.chaos_counts == {"drop:submit": 1}


def test_a_hung_submit_times_the_caller_out_and_is_billed(sim, receiver):
    hook = receiver()
    sim.delay = 0.1  # the callback comes while the submit still hangs
    sim.set_faults(drop_rate=1.0, drop_hang_rate=1.0, drop_hang_seconds=2.0)
    body = {"image": PRODUCT, "prompt": "a model", "notify_url": hook.url}
    with pytest.raises(requests.ReadTimeout):
        requests.post(
            sim.base_url + SUBMIT,
            json=body,
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=(2, 0.5),
        )
    wait_for(lambda: hook.bodies)
    wait_for(lambda: sim.ledger.entries()[0]["reply"])
    (entry,) = sim.ledger.entries()
    assert entry["reply"] == "hung up" and entry["reply_seconds"] >= 2.0
    assert entry["callbacks"][0]["at"] < entry["accepted_at"] + entry["reply_seconds"]
    assert sim.chaos_counts == {"drop:submit": 1, "hang:submit": 1}


def test_server_errors_create_no_task_but_a_gateway_timeout_on_a_submit(sim):
    app_task = str(uuid.uuid4())
    hook = f"http://127.0.0.1:9/callback/{app_task}/token/"
    sim.set_faults(server_error_rate=1.0, chaos_seed=5)
    statuses = [post_submit(sim, notify_url=hook).status_code for _ in range(24)]
    assert set(statuses) == {500, 502, 503, 504}  # seed 5 draws each of them
    entries = sim.ledger.entries()
    assert len(entries) == statuses.count(504) == sim.accepted_submits
    assert {entry["reply"] for entry in entries} == {"504"}
    sim.set_faults(server_error_rate=0.0, throttle_rate=1.0)
    throttled = post_submit(sim, notify_url=hook)
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "1"
    assert len(sim.ledger.entries()) == statuses.count(504)
    # The others are in the ledger as answered without a task, naming the caller.
    refused = sim.ledger.refusals()
    assert [item["answer"] for item in refused] == [
        f"HTTP {status}" for status in statuses if status != 504
    ] + ["HTTP 429"]
    assert {item["caller_ref"] for item in refused} == {app_task}


def test_the_ledger_records_the_task_its_caller_and_the_pictures_served(sim):
    app_task = str(uuid.uuid4()).upper()
    reply = submit(sim, notify_url=f"http://127.0.0.1:9/hook/{app_task}/", image_count=2)
    task_id = reply["result"]["task_id"]
    urls = finished_images(sim, task_id)
    pictures = [requests.get(url, timeout=10).content for url in urls]
    requests.get(urls[0], timeout=10)  # served twice: the same bytes, recorded once
    (entry,) = sim.ledger.entries()
    assert entry["task_id"] == task_id and entry["reply"] == "sent"
    assert entry["caller_ref"] == app_task.lower()
    assert entry["image_sha256"] == hashlib.sha256(base64.b64decode(PRODUCT)).hexdigest()
    assert entry["served"] == {
        sub: [hashlib.sha256(data).hexdigest()]
        for sub, data in zip(reply["result"]["sub_task_ids"], pictures, strict=True)
    }
    sim.reset()
    assert sim.ledger.entries() == []


@pytest.mark.parametrize(
    ("rates", "plan", "statuses"),
    [
        ({"callback_lost_rate": 1.0}, ["lost"], []),
        ({"callback_duplicate_rate": 1.0}, ["duplicate"], [[1], [1]]),
        ({"callback_reorder_rate": 1.0}, ["reorder"], [[1], [2]]),
        (
            {"callback_duplicate_rate": 1.0, "callback_reorder_rate": 1.0},
            ["duplicate", "reorder"],
            [[1], [1], [2]],
        ),
        ({"callback_lost_rate": 1.0, "callback_duplicate_rate": 1.0}, ["lost"], []),
        ({"callback_reorder_rate": 0.0, "drop_rate": 0.0, "chaos_seed": 3}, None, [[1]]),
    ],
)
def test_each_task_draws_its_callback_plan(sim, receiver, rates, plan, statuses):
    hook = receiver()
    sim.set_faults(**rates)
    task_id = submit(sim, notify_url=hook.url)["result"]["task_id"]
    finished_images(sim, task_id)
    wait_for(lambda: not sim._timers)  # every delivery (and retry) is over
    (entry,) = sim.ledger.entries()
    assert entry["callback_plan"] == plan
    assert [hook.statuses(n) for n in range(len(hook.bodies))] == statuses
    delivered = sorted((item["outcome"], item["stale"]) for item in entry["callbacks"])
    assert delivered == sorted((200, status == [2]) for status in statuses)
    if plan == ["duplicate"]:
        assert hook.bodies[0] == hook.bodies[1]


def test_callback_fates_follow_the_rates(sim):
    sim.send_callbacks = False  # only the draws matter here
    sim.set_faults(chaos_seed=11, **{k: v for k, v in CHAOS_RATES.items() if "callback" in k})
    for _ in range(100):
        submit(sim)
    plans = [entry["callback_plan"] for entry in sim.ledger.entries()]
    lost = sum(plan == ["lost"] for plan in plans)
    assert 7 <= lost <= 35  # Binomial(100, 0.2), 3 standard deviations and more
    assert sim.chaos_counts["callback_lost"] == lost
    assert sim.chaos_counts["callback_duplicate"] == sum("duplicate" in p for p in plans)
    assert sim.chaos_counts["callback_reorder"] == sum("reorder" in p for p in plans)


def test_chaos_rates_are_validated(sim):
    with pytest.raises(ValueError, match="drop_rate"):
        sim.set_faults(drop_rate=1.5)
    with pytest.raises(ValueError, match="server_error_rate"):
        sim.set_faults(server_error_rate=0.6, throttle_rate=0.3, drop_rate=0.2)
    with pytest.raises(ValueError, match="chaos_seed"):
        sim.set_faults(chaos_seed="x")
    assert sim.faults == Faults()


def test_the_control_endpoints_need_the_token_and_set_faults(sim):
    report = sim.base_url + "/simulator/control/report"
    faults = sim.base_url + "/simulator/control/faults"
    assert requests.get(report, timeout=5).status_code == 401
    assert requests.post(faults, json={"drop_rate": 1}, timeout=5).status_code == 401
    assert sim.faults.drop_rate == 0
    answer = call(sim, "POST", "/simulator/control/faults", json={"callback_lost_rate": 0.5})
    assert answer.status_code == 200 and answer.json()["result"]["callback_lost_rate"] == 0.5
    bad = call(sim, "POST", "/simulator/control/faults", json={"drop_rate": 2})
    assert bad.status_code == 400 and "drop_rate" in bad.json()["message"]
    unknown = call(sim, "POST", "/simulator/control/faults", json={"no_such_fault": 1})
    assert unknown.status_code == 400
    assert call(sim, "GET", "/simulator/control/faults").status_code == 405
    submit(sim)
    result = call(sim, "GET", "/simulator/control/report").json()["result"]
    assert result["accepted_submits"] == 1 and len(result["ledger"]) == 1
    assert result["faults"]["callback_lost_rate"] == 0.5
    counters = call(sim, "GET", "/simulator/control/report?ledger=0").json()["result"]
    assert "ledger" not in counters and counters["accepted_submits"] == 1
    json.dumps(result)  # JSON all the way down


def test_caller_reference_is_the_first_uuid_of_the_path():
    ref = "0b0e4c52-6a43-4e36-9d64-2a4b9ad1f3a1"
    assert caller_reference(f"https://shop.example/hidream/callback/{ref}/tok/") == ref
    assert caller_reference(f"https://{ref}.example/x") is None
    assert caller_reference(None) is None


def test_command_chaos_options_and_report_on_sigterm(tmp_path):
    from hidream_models.management.commands.hidream_simulator import Command

    parser = Command().create_parser("manage.py", "hidream_simulator")
    options = vars(parser.parse_args(["--chaos", "--drop-rate", "0.25", "--chaos-seed", "9"]))
    with HiDreamSimulator() as fresh:
        changed = Command._set_faults(fresh, options)
    assert changed == {**CHAOS_RATES, "drop_rate": 0.25, "chaos_seed": 9}

    report = tmp_path / "report.json"
    script = (
        "from django.core.management import call_command\n"
        "from hidream_models.management.commands.hidream_simulator import Command\n"
        f"call_command(Command(), '--port', '0', '--chaos', '--report', {str(report)!r})\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    process = subprocess.Popen(  # noqa: S603 - a fixed argv: this interpreter, our script
        [sys.executable, "-c", script], cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE
    )
    try:
        line = process.stdout.readline()
        assert "listening on http://127.0.0.1:" in line
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0
    written = json.loads(report.read_text())
    assert written["ledger"] == [] and written["faults"]["callback_lost_rate"] == 0.2
