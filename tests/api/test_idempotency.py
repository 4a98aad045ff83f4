"""``Idempotency-Key`` on create, bulk and retry (issue 14, point 3), as Stripe's: the same key
and request get the first answer again, another request with the key is refused (422), one
still running is a 409; keys live in their own table and expire."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from hidream_models.models import HiDreamIdempotencyKey, ModelImageTask, TaskStatus
from tests import jobs
from tests.api.helpers import PROMPT, TASKS, TEMPLATE, body, make_user, product_ref, token_client

pytestmark = pytest.mark.django_db(transaction=True)


def create(client, product, key, **data):
    payload = {"product": product_ref(product), **PROMPT, **data}
    return client.post(TASKS, payload, HTTP_IDEMPOTENCY_KEY=key)


def submissions_enqueued() -> int:
    return [job.task.name for job in jobs.pending_jobs()].count("dispatch_submissions")


def test_same_key_twice_gives_the_same_task(api, product):
    first = create(api, product, "order-42-spring")
    assert first.status_code == 201, first.content
    assert "Idempotent-Replayed" not in first

    second = create(api, product, "order-42-spring")
    assert second.status_code == 201
    assert second["Idempotent-Replayed"] == "true"
    assert body(second)["id"] == body(first)["id"]
    assert second["Location"] == first["Location"]
    assert body(second) == body(first)
    assert ModelImageTask.objects.count() == 1
    row = HiDreamIdempotencyKey.objects.get()
    assert (row.key, row.status_code, len(row.fingerprint)) == ("order-42-spring", 201, 64)
    assert submissions_enqueued() == 1, "the replay must not submit the task again"


def test_the_same_key_with_another_request_is_422_naming_the_key(api, product):
    first = create(api, product, "same-key")
    second = create(api, product, "same-key", prompt="something else", image_count=4)
    assert second.status_code == 422, second.content
    assert "same-key" in body(second)["detail"]
    assert ModelImageTask.objects.count() == 1
    assert body(create(api, product, "same-key"))["id"] == body(first)["id"]  # still replays


def test_a_key_still_running_is_409(api, product, superuser, monkeypatch):
    from hidream_models.api import idempotency

    monkeypatch.setattr(idempotency, "fingerprint", lambda request: "f" * 64)
    HiDreamIdempotencyKey.objects.create(user=superuser, key="busy", fingerprint="f" * 64)
    response = create(api, product, "busy")
    assert response.status_code == 409, response.content
    assert "busy" in body(response)["detail"] and "still running" in body(response)["detail"]
    assert ModelImageTask.objects.count() == 0


def test_a_key_past_its_ttl_names_a_new_request(api, product, settings):
    settings.HIDREAM_IDEMPOTENCY_KEY_TTL = 60
    first = create(api, product, "weekly")
    HiDreamIdempotencyKey.objects.update(created_at=timezone.now() - timedelta(seconds=61))
    second = create(api, product, "weekly", prompt="another week")
    assert second.status_code == 201 and "Idempotent-Replayed" not in second
    assert body(second)["id"] != body(first)["id"]


def test_bulk_and_retry_take_the_key(api, product, make_product):
    other = make_product()
    payload = {"products": [product_ref(product), product_ref(other)], **PROMPT}
    first = api.post(f"{TASKS}bulk/", payload, HTTP_IDEMPOTENCY_KEY="bulk-1")
    again = api.post(f"{TASKS}bulk/", payload, HTTP_IDEMPOTENCY_KEY="bulk-1")
    assert first.status_code == again.status_code == 201
    assert again["Idempotent-Replayed"] == "true" and body(again) == body(first)
    assert ModelImageTask.objects.count() == 2
    changed = api.post(
        f"{TASKS}bulk/",
        {**payload, "products": [product_ref(other)]},
        HTTP_IDEMPOTENCY_KEY="bulk-1",
    )
    assert changed.status_code == 422

    failed = ModelImageTask.objects.first()
    ModelImageTask.objects.filter(pk=failed.pk).update(status=TaskStatus.FAILED)
    url = f"{TASKS}{failed.pk}/retry/"
    retried = api.post(url, {}, HTTP_IDEMPOTENCY_KEY="retry-1")
    replayed = api.post(url, {}, HTTP_IDEMPOTENCY_KEY="retry-1")
    assert retried.status_code == replayed.status_code == 201, replayed.content
    assert replayed["Idempotent-Replayed"] == "true"
    assert body(replayed)["id"] == body(retried)["id"]
    assert ModelImageTask.objects.count() == 3


def test_uploads_count_by_their_bytes_not_their_names(api):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from tests.conftest import make_image_bytes

    def upload(name, color):
        data = make_image_bytes(size=(40, 30), color=color)
        return {"image": SimpleUploadedFile(name, data, "image/jpeg"), **PROMPT}

    first = api.post(
        TASKS, upload("a.jpg", (9, 9, 9)), format="multipart", HTTP_IDEMPOTENCY_KEY="u"
    )
    same = api.post(TASKS, upload("b.jpg", (9, 9, 9)), format="multipart", HTTP_IDEMPOTENCY_KEY="u")
    other = api.post(
        TASKS, upload("a.jpg", (200, 9, 9)), format="multipart", HTTP_IDEMPOTENCY_KEY="u"
    )
    assert first.status_code == 201 and same["Idempotent-Replayed"] == "true"
    assert other.status_code == 422
    assert ModelImageTask.objects.count() == 1


def test_no_key_makes_a_new_task_each_time(api, product):
    ids = {body(api.post(TASKS, {"product": product_ref(product), **PROMPT}))["id"]}
    ids.add(body(api.post(TASKS, {"product": product_ref(product), **PROMPT}))["id"])
    assert len(ids) == 2
    assert ModelImageTask.objects.count() == 2


def test_the_same_key_of_another_user_is_another_task(api, product):
    other = token_client(make_user("other", ("hidream_models.generate", "catalog.view_product")))
    mine = create(api, product, "shared-key")
    theirs = create(other, product, "shared-key")
    assert theirs.status_code == 201
    assert "Idempotent-Replayed" not in theirs
    assert body(theirs)["id"] != body(mine)["id"]
    assert body(theirs)["created_by"] == "other"
    assert ModelImageTask.objects.count() == 2
    again = create(other, product, "shared-key")
    assert body(again)["id"] == body(theirs)["id"]
    assert again["Idempotent-Replayed"] == "true"


def test_key_of_255_characters_is_fine(api, product):
    key = "k" * 255
    first = create(api, product, key)
    assert first.status_code == 201, first.content
    assert body(create(api, product, key))["id"] == body(first)["id"]


def test_key_longer_than_255_is_refused(api, product):
    response = create(api, product, "k" * 256)
    assert response.status_code == 400
    assert "255" in " ".join(body(response)["Idempotency-Key"])
    assert ModelImageTask.objects.count() == 0


def test_a_refused_create_does_not_use_up_the_key(api, product):
    refused = create(api, product, "fix-and-retry", image_count=9)
    assert refused.status_code == 400
    fixed = create(api, product, "fix-and-retry", **TEMPLATE, prompt="")
    assert fixed.status_code == 400  # template and a blank prompt: still wrong
    accepted = api.post(
        TASKS, {"product": product_ref(product), **TEMPLATE}, HTTP_IDEMPOTENCY_KEY="fix-and-retry"
    )
    assert accepted.status_code == 201, accepted.content
    assert "Idempotent-Replayed" not in accepted
    assert ModelImageTask.objects.count() == 1


def test_a_request_that_dies_before_its_key_is_recorded_leaves_no_task_and_a_free_key(
    api, product, monkeypatch
):
    """The task and the key's result commit together: a process stopped between the two
    leaves neither, so the client's retry with the same key makes the task (once)."""
    from hidream_models.api import idempotency

    real_record = idempotency.record

    def dies(*args, **kwargs):
        raise RuntimeError("worker killed between the task and the key's record")

    monkeypatch.setattr(idempotency, "record", dies)
    api.raise_request_exception = True
    with pytest.raises(RuntimeError):
        create(api, product, "order-7")
    assert ModelImageTask.objects.count() == 0
    assert submissions_enqueued() == 0

    monkeypatch.setattr(idempotency, "record", real_record)
    again = create(api, product, "order-7")
    assert again.status_code == 201 and "Idempotent-Replayed" not in again
    assert ModelImageTask.objects.count() == 1
