"""``Idempotency-Key`` on ``POST tasks/``: a retried create returns the first task."""

from __future__ import annotations

import pytest

from hidream_models.api.views import TaskViewSet
from hidream_models.models import ModelImageTask
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
    assert ModelImageTask.objects.get().idempotency_key == "order-42-spring"
    assert submissions_enqueued() == 1, "the replay must not submit the task again"


def test_replay_ignores_a_changed_body(api, product):
    first = create(api, product, "same-key")
    second = create(api, product, "same-key", prompt="something else", image_count=4)
    assert body(second)["id"] == body(first)["id"]
    assert body(second)["prompt"] == PROMPT["prompt"]
    assert ModelImageTask.objects.count() == 1


def test_a_different_key_makes_a_new_task(api, product):
    first = create(api, product, "key-a")
    second = create(api, product, "key-b")
    assert second.status_code == 201
    assert "Idempotent-Replayed" not in second
    assert body(second)["id"] != body(first)["id"]
    assert ModelImageTask.objects.count() == 2


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


def test_two_racing_requests_with_one_key_make_one_task(api, product, monkeypatch):
    """The second request passed the key lookup before the first one committed: the unique
    constraint stops the duplicate and the answer is the first request's task."""
    first = create(api, product, "racing-key")
    lookup = TaskViewSet._task_for_key
    calls = []

    def late_lookup(user, key):
        calls.append(key)
        return None if len(calls) == 1 else lookup(user, key)

    monkeypatch.setattr(TaskViewSet, "_task_for_key", staticmethod(late_lookup))
    second = create(api, product, "racing-key")
    assert calls == ["racing-key", "racing-key"]
    assert second.status_code == 201, second.content
    assert second["Idempotent-Replayed"] == "true"
    assert body(second)["id"] == body(first)["id"]
    assert ModelImageTask.objects.count() == 1
