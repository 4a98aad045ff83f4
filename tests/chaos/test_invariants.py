"""The chaos run's checks (invariants.py) catch each kind of violation, and pass a clean run.

Plain data in, no database or processes: the run itself is ``make test-chaos``.
"""

import hashlib
import uuid

import pytest

from tests.chaos.invariants import RunData, check

CALLED_BACK = {"at": 1003.0, "outcome": 200, "stale": False}


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def clean_run() -> RunData:
    """Two succeeded tasks of two pictures, and one unconfirmed whose answer was dropped."""
    tasks, images, ledger, files = [], [], [], {}
    for number in range(3):
        task_id, remote = str(uuid.uuid4()), f"remote-{number}"
        subs = [f"{remote}-a", f"{remote}-b"]
        unconfirmed = number == 2
        tasks.append(
            {
                "id": task_id,
                "status": "unconfirmed" if unconfirmed else "succeeded",
                "remote_task_id": None if unconfirmed else remote,
                "sub_task_ids": [] if unconfirmed else subs,
                "request_sent_at": 1000.0 + number,
                "updated_at": 1000.0 + number + (25 if unconfirmed else 4),  # the sweep's mark
                "error_message": "",
            }
        )
        ledger.append(
            {
                "task_id": remote,
                "sub_task_ids": subs,
                "caller_ref": task_id,
                "accepted_at": 1000.1 + number,
                "reply": "dropped" if unconfirmed else "sent",
                "reply_seconds": 0.05,
                "callback_plan": ["lost"] if unconfirmed else [],
                "callbacks": [] if unconfirmed else [dict(CALLED_BACK)],
                "served": {sub: [] if unconfirmed else [digest(sub)] for sub in subs},
            }
        )
        if not unconfirmed:
            for position, sub in enumerate(subs):
                name = f"hidream/{task_id}/{sub}.jpg"
                files[name] = digest(sub)
                images.append(
                    {
                        "id": number * 10 + position,
                        "task_id": task_id,
                        "sub_task_id": sub,
                        "status": "stored",
                        "file": name,
                        "sha256": digest(sub),
                    }
                )
    return RunData(
        tasks=tasks,
        images=images,
        files=files,
        referenced=set(files),
        events=[{"id": 1, "task_id": tasks[0]["id"], "outcome": "applied", "error": ""}],
        ledger=ledger,
        kills=[],
        chaos_counts={"drop:submit": 1, "server_error:results": 2, "callback_lost": 1},
    )


def rules(data: RunData) -> list[str]:
    return sorted({violation.rule for violation in check(data).violations})


def test_a_clean_run_has_no_violation_and_its_figures():
    outcome = check(clean_run())
    assert outcome.violations == []
    figures = outcome.figures
    assert (figures["tasks"], figures["submits billed"], figures["succeeded"]) == (3, 3, 2)
    assert figures["unconfirmed"] == 1 and figures["HTTP 5xx injected"] == 2
    assert figures["pictures stored (byte-identical)"] == "4 (4)"
    assert outcome.unconfirmed_reasons == {"HiDream closed the connection without an answer": 1}


def test_a_task_billed_twice():
    data = clean_run()
    data.ledger.append(dict(data.ledger[0], task_id="remote-again"))
    assert rules(data) == ["billed once"]
    assert check(data).figures["duplicates found"] == 1


def test_two_tasks_holding_one_hidream_task():
    data = clean_run()
    data.tasks[1]["remote_task_id"] = data.tasks[0]["remote_task_id"]
    assert "one app task per HiDream task" in rules(data)


def test_a_task_left_processing():
    data = clean_run()
    data.tasks[0]["status"] = "processing"
    assert rules(data) == ["final or unconfirmed"]


def test_a_failed_task_whose_submit_was_billed():
    data = clean_run()
    data.tasks[2].update(status="failed")
    assert rules(data) == ["final or unconfirmed"]


@pytest.mark.parametrize(
    ("change", "kills", "ok"),
    [
        ({"reply": "sent"}, [], False),  # the answer went out at once: why unconfirmed?
        ({"reply": "sent", "reply_seconds": 3.5}, [], True),  # after the read timeout
        ({"reply": "sent"}, [{"at": 1002.5, "kind": "child"}], True),  # its worker was killed
        ({"callbacks": [{"at": 1005.0, "outcome": 200, "stale": False}]}, [], False),
        ({"callbacks": [{"at": 1005.0, "outcome": 200, "stale": True}]}, [], True),
        ({"callbacks": [{"at": 1005.0, "outcome": 503, "stale": False}]}, [], True),
    ],
)
def test_an_unconfirmed_task_needs_an_answer_that_never_reached_the_app(change, kills, ok):
    data = clean_run()
    data.ledger[2].update(change)
    data.kills = kills
    assert rules(data) == ([] if ok else ["unconfirmed only when unanswered"])


def test_an_unconfirmed_task_that_never_reached_hidream():
    data = clean_run()
    del data.ledger[2]
    assert rules(data) == ["unconfirmed only when unanswered"]
    data.kills = [{"at": 1003.0, "kind": "parent"}]  # killed while sending: nobody can know
    assert rules(data) == []
    data.tasks[2]["updated_at"] = 1005.5  # but a live worker marked it: the kill was another's
    assert rules(data) == ["unconfirmed only when unanswered"]


def test_an_unconfirmed_task_that_hidream_answered_without_billing():
    data = clean_run()
    del data.ledger[2]
    data.refused = [{"caller_ref": data.tasks[2]["id"], "at": 1002.2, "answer": "HTTP 503"}]
    (violation,) = check(data).violations
    assert violation.rule == "unconfirmed only when unanswered"
    assert "answered its submit HTTP 503" in violation.detail


def test_pictures_missing_doubled_or_not_identical():
    data = clean_run()
    data.images[0]["sha256"] = digest("something else")
    assert rules(data) == ["one identical picture per sub-task"]

    data = clean_run()
    data.images.append(dict(data.images[0], id=99))
    assert rules(data) == ["one identical picture per sub-task"]
    assert check(data).figures["duplicates found"] == 1

    data = clean_run()
    data.images[1].update(status="downloading", sha256=None)
    assert rules(data) == ["one identical picture per sub-task"]

    data = clean_run()
    data.images[1]["sha256"] = None  # the row says stored, the file is gone
    assert rules(data) == ["one identical picture per sub-task"]


def test_orphan_files_and_callbacks_left_received():
    data = clean_run()
    data.files["hidream/lost/x.jpg"] = digest("x")
    data.events.append({"id": 2, "task_id": data.tasks[1]["id"], "outcome": "received"})
    assert rules(data) == ["no callback left received", "no file without a row"]
    assert check(data).figures["orphan files"] == 1


def test_a_hidream_task_billed_for_no_task_of_the_app():
    data = clean_run()
    data.ledger.append(dict(data.ledger[0], task_id="stray", caller_ref=None))
    assert rules(data) == ["one app task per HiDream task"]
