"""Unknown templates are refused before they cost a submit (issue 14, point 4).

Once the template catalogue of a kind is synced, creation (API create and bulk, the admin's
generate form, presets) refuses a template id the catalogue does not offer, naming it. A kind
never synced is left to HiDream.
"""

from __future__ import annotations

import pytest

from hidream_models import services
from hidream_models.exceptions import HiDreamValidationError
from hidream_models.models import HiDreamPreset, HiDreamTemplate, ModelImageTask, TemplateKind
from tests.api.helpers import make_user, token_client

pytestmark = pytest.mark.django_db


@pytest.fixture
def catalogue(db):
    HiDreamTemplate.objects.create(kind=TemplateKind.HUMAN, remote_id="h-001", name_en="Anna")
    HiDreamTemplate.objects.create(
        kind=TemplateKind.HUMAN, remote_id="h-old", name_en="Gone", is_active=False
    )
    HiDreamTemplate.objects.create(kind=TemplateKind.SCENE, remote_id="s-001", name_en="Street")


@pytest.fixture
def api(db):
    return token_client(make_user("boss", superuser=True))


def template(human="h-001", scene="s-001"):
    return {"template": {"human_template_id": human, "scene_template_id": scene}}


@pytest.mark.parametrize(
    ("human", "scene"), [("h-999", "s-001"), ("h-old", "s-001"), ("h-001", "s-9")]
)
def test_api_create_refuses_a_template_the_catalogue_does_not_offer(
    api, catalogue, make_product, human, scene
):
    product = make_product()
    response = api.post(
        "/api/hidream/tasks/",
        {"product": f"catalog.product:{product.pk}", **template(human, scene)},
        format="json",
    )
    assert response.status_code == 400, response.content
    errors = response.json()["template"]
    unknown = human if human != "h-001" else scene
    field = "human_template_id" if human != "h-001" else "scene_template_id"
    assert unknown in errors[field][0]
    assert not ModelImageTask.objects.exists()


def test_api_bulk_refuses_an_unknown_template_too(api, catalogue, make_product):
    response = api.post(
        "/api/hidream/tasks/bulk/",
        {"products": [f"catalog.product:{make_product().pk}"], **template("h-999")},
        format="json",
    )
    assert response.status_code == 400
    assert "h-999" in str(response.json())
    assert not ModelImageTask.objects.exists()


def test_known_templates_and_an_unsynced_catalogue_are_accepted(api, make_product):
    # Nothing synced yet: HiDream decides, as before.
    assert services.GenerationOptions.validated({**template("h-999", "s-9")}).human_template_id
    HiDreamTemplate.objects.create(kind=TemplateKind.HUMAN, remote_id="h-001", name_en="Anna")
    HiDreamTemplate.objects.create(kind=TemplateKind.SCENE, remote_id="s-001", name_en="Street")
    response = api.post(
        "/api/hidream/tasks/",
        {"product": f"catalog.product:{make_product().pk}", **template()},
        format="json",
    )
    assert response.status_code == 201, response.content


def test_the_service_names_every_unknown_id(catalogue):
    with pytest.raises(HiDreamValidationError) as refused:
        services.GenerationOptions.validated(template("h-999", "s-9"))
    assert set(refused.value.errors) == {
        "template.human_template_id",
        "template.scene_template_id",
    }
    assert "h-999" in str(refused.value) and "s-9" in str(refused.value)


def test_a_preset_whose_template_is_no_longer_offered_is_refused(api, catalogue, make_product):
    human = HiDreamTemplate.objects.get(remote_id="h-001")
    scene = HiDreamTemplate.objects.get(remote_id="s-001")
    preset = HiDreamPreset.objects.create(
        name="Spring", mode="template", human_template=human, scene_template=scene
    )
    HiDreamTemplate.objects.filter(pk=human.pk).update(is_active=False)  # a sync dropped it
    response = api.post(
        "/api/hidream/tasks/",
        {"product": f"catalog.product:{make_product().pk}", "preset": preset.pk},
        format="json",
    )
    assert response.status_code == 400, response.content
    assert "h-001" in str(response.json()["preset"])


# -- a retry that cannot help warns before it sends -------------------------------------------


def failed_task(product, **fields):
    from hidream_models.models import TaskStatus
    from tests.api.helpers import make_task

    return make_task(product, TaskStatus.FAILED, **fields)


def moderated_task(product):
    from hidream_models.models import GeneratedImage

    task = failed_task(product)
    GeneratedImage.objects.create(task=task, sub_task_id="s-1", position=0, remote_status=4)
    return task


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda p: failed_task(p, error_code=40001, error_message="invalid param"), "40001"),
        (moderated_task, "moderation"),
    ],
)
def test_api_retry_of_a_failure_a_resend_cannot_mend_warns_first(api, make_product, make, words):
    task = make(make_product())
    refused = api.post(f"/api/hidream/tasks/{task.pk}/retry/", {}, format="json")
    assert refused.status_code == 409, refused.content
    assert words in refused.json()["detail"] and "anyway" in refused.json()["detail"]
    assert ModelImageTask.objects.count() == 1
    sent = api.post(f"/api/hidream/tasks/{task.pk}/retry/", {"anyway": True}, format="json")
    assert sent.status_code == 201, sent.content
    assert ModelImageTask.objects.count() == 2


def test_a_failure_that_may_pass_is_retried_without_a_warning(api, make_product):
    task = failed_task(make_product(), error_message="HTTP 503 five times")
    assert api.post(f"/api/hidream/tasks/{task.pk}/retry/", {}, format="json").status_code == 201


def test_the_admin_retry_action_warns_and_offers_retry_anyway(admin_client, make_product):
    from django.contrib.messages import get_messages
    from django.urls import reverse

    task = moderated_task(make_product())
    url = reverse("admin:hidream_models_modelimagetask_changelist")
    data = {"action": "retry_failed_tasks", "_selected_action": [str(task.pk)]}
    response = admin_client.post(url, data)
    said = " ".join(str(m) for m in get_messages(response.wsgi_request))
    assert "moderation" in said and "anyway" in said
    assert ModelImageTask.objects.count() == 1
    admin_client.post(url, {**data, "action": "retry_failed_tasks_anyway"})
    assert ModelImageTask.objects.filter(retry_of=task).count() == 1
