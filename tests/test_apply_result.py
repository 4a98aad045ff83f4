"""apply_result: idempotent, never backwards, status mapping; the deadline; hidream_sync."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from hidream_models import services, signals
from hidream_models.models import GeneratedImage, ImageStatus, ModelImageTask, TaskStatus
from hidream_models.payloads import PayloadError, parse_task_result

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def task():
    return ModelImageTask.objects.create(
        mode="prompt",
        prompt="p",
        image_count=3,
        status=TaskStatus.SUBMITTED,
        remote_task_id="r-1",
        sub_task_ids=["a", "b", "c"],
        submitted_at=timezone.now(),
    )


def payload(*subs, task_id="r-1"):
    return parse_task_result(
        {
            "task_id": task_id,
            "sub_task_results": [
                {
                    "sub_task_id": s,
                    "task_status": code,
                    "task_completion": c,
                    "image": f"http://127.0.0.1:9/{s}.jpg" if code == 1 else "",
                    "description": d,
                }
                for s, code, c, d in subs
            ],
        }
    )


def states(task):
    return {i.sub_task_id: (i.status, i.remote_status) for i in task.images.all()}


def test_progress_then_final_then_late_progress_changes_nothing(task):
    services.apply_result(task.pk, payload(("a", 2, 0.5, "")), source="poll")
    assert task.images.get(sub_task_id="a").progress == 0.5
    services.apply_result(task.pk, payload(("a", 1, 1, "")), source="callback")
    before = states(task)
    # An older poll answer arriving late must not move the picture backwards.
    outcome = services.apply_result(task.pk, payload(("a", 2, 0.7, "")), source="poll")
    assert outcome.changed is False
    assert states(task) == before
    assert task.images.get(sub_task_id="a").status == ImageStatus.DOWNLOADING


@pytest.mark.parametrize(
    ("codes", "expected"),
    [
        ((3, 4, 1004), TaskStatus.FAILED),
        ((1005, 1006, 3), TaskStatus.FAILED),
    ],
)
def test_all_failed_codes_fail_the_task(task, codes, expected):
    subs = [(s, code, 1, "why") for s, code in zip("abc", codes, strict=True)]
    outcome = services.apply_result(task.pk, payload(*subs), source="callback")
    task.refresh_from_db()
    assert outcome.status == expected == task.status
    assert task.finished_at is not None
    assert "No picture could be made" in task.error_message
    reasons = {i.failure_reason for i in task.images.all()}
    assert any("moderation" in r for r in reasons) or any("no result" in r for r in reasons)


def test_unknown_code_is_recorded_and_kept_pending(task):
    services.apply_result(task.pk, payload(("a", 77, 0.3, "")), source="poll")
    image = task.images.get(sub_task_id="a")
    assert image.status == ImageStatus.PENDING and image.remote_status == 77
    task.refresh_from_db()
    assert task.status == TaskStatus.PROCESSING
    assert task in services.polling.tasks_due_for_polling(timezone.now() + timedelta(hours=1))


def test_final_task_never_moves_backwards(task):
    services.apply_result(
        task.pk, payload(("a", 3, 1, ""), ("b", 3, 1, ""), ("c", 3, 1, "")), source="callback"
    )
    task.refresh_from_db()
    assert task.status == TaskStatus.FAILED
    services.apply_result(task.pk, payload(("a", 1, 1, ""), ("b", 2, 0.1, "")), source="poll")
    task.refresh_from_db()
    assert task.status == TaskStatus.FAILED
    assert set(task.images.values_list("status", flat=True)) == {ImageStatus.FAILED}


def test_mixed_results_end_partial_after_downloads(task, monkeypatch):
    services.apply_result(
        task.pk, payload(("a", 1, 1, ""), ("b", 1, 1, ""), ("c", 4, 1, "")), source="callback"
    )
    task.refresh_from_db()
    assert task.status == TaskStatus.PROCESSING  # two downloads to go
    for image in task.images.filter(status=ImageStatus.DOWNLOADING):
        services.results._finish_image(
            image.pk, saved_name=f"x/{image.sub_task_id}.jpg", size=10, width=1, height=1
        )
    task.refresh_from_db()
    assert task.status == TaskStatus.PARTIAL
    assert "1 of 3 pictures failed" in task.error_message


def test_result_for_another_hidream_task_is_refused(task):
    with pytest.raises(PayloadError, match="other"):
        services.apply_result(task.pk, payload(("a", 1, 1, ""), task_id="other"), source="poll")
    assert not GeneratedImage.objects.exists()


def test_callback_before_submit_reply_is_kept(task):
    ModelImageTask.objects.filter(pk=task.pk).update(
        status=TaskStatus.SUBMITTING, remote_task_id=None, sub_task_ids=[]
    )
    services.apply_result(task.pk, payload(("a", 1, 1, "")), source="callback")
    task.refresh_from_db()
    assert task.remote_task_id == "r-1" and task.status == TaskStatus.PROCESSING
    # The late submit reply must not move it back to "submitted".
    from hidream_models.client import SubmitResult

    claimed = ModelImageTask.objects.get(pk=task.pk)
    services.submission._record_submission(claimed, SubmitResult("r-1", ("a", "b", "c"), "q"))
    task.refresh_from_db()
    assert task.status == TaskStatus.PROCESSING
    assert task.images.count() == 3


def test_deadline_fails_unfinished_work_with_a_message(task, settings):
    settings.HIDREAM_TASK_DEADLINE = 60
    services.apply_result(task.pk, payload(("a", 2, 0.5, "")), source="poll")
    later = timezone.now() + timedelta(minutes=5)
    report = services.sync_pass(now=later)
    task.refresh_from_db()
    assert report.expired == 1
    assert task.status == TaskStatus.FAILED
    assert "HIDREAM_TASK_DEADLINE" in task.error_message


def test_hidream_sync_command_runs_one_pass(task, settings, capsys):
    settings.HIDREAM_TASK_DEADLINE = 1
    ModelImageTask.objects.filter(pk=task.pk).update(
        submitted_at=timezone.now() - timedelta(seconds=10)
    )
    settings.HIDREAM_BASE_URL = "http://127.0.0.1:9"
    call_command("hidream_sync")
    assert "expired 1" in capsys.readouterr().out
    task.refresh_from_db()
    assert task.status == TaskStatus.FAILED


def test_a_broken_signal_receiver_does_not_break_the_work(task, caplog):
    def broken(**kwargs):
        raise RuntimeError("shop bug")

    signals.task_finished.connect(broken)
    try:
        services.apply_result(
            task.pk, payload(("a", 3, 1, ""), ("b", 3, 1, ""), ("c", 3, 1, "")), source="callback"
        )
    finally:
        signals.task_finished.disconnect(broken)
    task.refresh_from_db()
    assert task.status == TaskStatus.FAILED
    assert "signal receiver" in caplog.text
