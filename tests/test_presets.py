"""Generation presets (admin, generate page, API), credit estimates and the task totals.

Presets are saved through the real preset admin; tasks made from them are submitted to the
real simulator on loopback where the test checks what HiDream received.
"""

from __future__ import annotations

import datetime as dt
from urllib.parse import parse_qsl

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.files.base import ContentFile
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from hidream_models import services
from hidream_models.models import (
    GeneratedImage,
    GenerationMode,
    HiDreamPreset,
    HiDreamTemplate,
    ImageStatus,
    ModelImageTask,
    TemplateKind,
)
from tests import jobs
from tests.conftest import make_image_bytes

PRODUCTS_URL = "admin:catalog_product_changelist"
CONFIRM_URL = "admin:catalog_product_hidream_generate"
TASKS_URL = "admin:hidream_models_modelimagetask_changelist"
PRESET_ADD = "admin:hidream_models_hidreampreset_add"
API = "/api/hidream/"


# -- helpers and fixtures --------------------------------------------------------------------


def html_of(response) -> str:
    return response.content.decode()


def chunk(html: str, start: str, end: str) -> str:
    begin = html.index(start)
    return html[begin : html.index(end, begin + len(start))]


def post_action(client, url_name, action, ids):
    data = {"action": action, "index": "0", "_selected_action": [str(pk) for pk in ids]}
    return client.post(reverse(url_name), data)


def field_row(html: str, field: str) -> str:
    """The admin change form's row of ``field`` (its errors are rendered inside it)."""
    begin = html.index(f"field-{field}")
    end = html.find('class="form-row', begin + 1)
    return html[begin : end if end != -1 else len(html)]


@pytest.fixture
def superuser(db):
    return get_user_model().objects.create_superuser("boss", "boss@example.com", "pw")


@pytest.fixture
def admin_client(client, superuser):
    client.force_login(superuser)
    return client


@pytest.fixture
def api(superuser):
    client = APIClient()
    client.force_authenticate(superuser)
    return client


@pytest.fixture
def templates(db):
    """Template rows as a sync leaves them: two models and two scenes."""
    make = HiDreamTemplate.objects.create
    return {
        "h-001": make(kind=TemplateKind.HUMAN, remote_id="h-001", name_en="Urban woman",
                      gender="Woman"),
        "h-002": make(kind=TemplateKind.HUMAN, remote_id="h-002", name_en="Business man",
                      gender="Man"),
        "s-001": make(kind=TemplateKind.SCENE, remote_id="s-001", name_en="Plain white studio",
                      scenes_type="indoor scenes"),
        "s-003": make(kind=TemplateKind.SCENE, remote_id="s-003", name_en="Seaside beach",
                      scenes_type="outdoor scenes"),
    }  # fmt: skip


@pytest.fixture
def presets(templates):
    beach = HiDreamPreset.objects.create(
        name="Beach look",
        description="Summer line",
        mode=GenerationMode.TEMPLATE,
        human_template=templates["h-002"],
        scene_template=templates["s-003"],
        image_count=3,
    )
    park = HiDreamPreset.objects.create(
        name="Park prompt",
        mode=GenerationMode.PROMPT,
        prompt="A model walking in a sunny park",
        image_count=1,
    )
    retired = HiDreamPreset.objects.create(
        name="Retired look",
        mode=GenerationMode.TEMPLATE,
        human_template=templates["h-001"],
        scene_template=templates["s-001"],
        image_count=2,
        is_active=False,
    )
    return {"beach": beach, "park": park, "retired": retired}


def product_ref(product) -> str:
    return f"catalog.product:{product.pk}"


# -- 1. the preset admin ---------------------------------------------------------------------


def preset_post(**fields):
    data = {
        "name": "A look",
        "description": "",
        "mode": "template",
        "human_template": "",
        "scene_template": "",
        "prompt": "",
        "image_count": "2",
        "is_active": "on",
    }
    data.update(fields)
    return data


def assert_refused_on(response, field: str, hint: str) -> None:
    """The form came back unsaved, with one error, shown beside ``field`` and naming ``hint``."""
    assert response.status_code == 200
    assert HiDreamPreset.objects.count() == 0
    errors = response.context["adminform"].form.errors
    assert list(errors) == [field], errors
    row = field_row(html_of(response), field)
    assert 'class="errorlist' in row and hint in row


@pytest.mark.django_db
def test_preset_admin_refuses_template_mode_without_templates(admin_client, templates):
    response = admin_client.post(reverse(PRESET_ADD), preset_post())
    assert response.status_code == 200
    assert HiDreamPreset.objects.count() == 0
    errors = response.context["adminform"].form.errors
    assert "human_template" in errors and "scene_template" in errors, errors
    html = html_of(response)
    assert "errornote" in html
    for field in ("human_template", "scene_template"):
        assert 'class="errorlist' in field_row(html, field), f"no error beside {field}"


@pytest.mark.django_db
def test_preset_admin_refuses_a_prompt_over_500_characters(admin_client, templates):
    response = admin_client.post(reverse(PRESET_ADD), preset_post(mode="prompt", prompt="x" * 501))
    assert_refused_on(response, "prompt", "500")


@pytest.mark.django_db
def test_preset_admin_refuses_five_pictures(admin_client, templates):
    response = admin_client.post(
        reverse(PRESET_ADD),
        preset_post(
            human_template=str(templates["h-001"].pk),
            scene_template=str(templates["s-001"].pk),
            image_count="5",
        ),
    )
    assert_refused_on(response, "image_count", "4")


@pytest.mark.django_db
def test_preset_admin_saves_a_valid_preset(admin_client, templates):
    response = admin_client.post(
        reverse(PRESET_ADD),
        preset_post(
            human_template=str(templates["h-001"].pk),
            scene_template=str(templates["s-003"].pk),
            image_count="4",
        ),
    )
    assert response.status_code == 302, (
        response.context and response.context["adminform"].form.errors
    )
    preset = HiDreamPreset.objects.get()
    assert preset.as_request() == {
        "image_count": 4,
        "template": {"human_template_id": "h-001", "scene_template_id": "s-003"},
    }


# -- 2. the generate page --------------------------------------------------------------------


@pytest.mark.django_db
def test_generate_page_lists_active_presets_only(admin_client, make_product, presets):
    product = make_product()
    page = post_action(admin_client, PRODUCTS_URL, "generate_model_images", [product.pk])
    assert page.status_code == 200
    html = html_of(page)
    select = chunk(html, 'name="preset"', "</select>")
    assert f'value="{presets["beach"].pk}"' in select and "Beach look" in select
    assert f'value="{presets["park"].pk}"' in select and "Park prompt" in select
    assert f'value="{presets["retired"].pk}"' not in select
    assert "Retired look" not in html


@pytest.mark.django_db
def test_generate_page_has_no_preset_picker_without_active_presets(admin_client, make_product):
    HiDreamPreset.objects.create(name="Old", mode="prompt", prompt="x", is_active=False)
    page = post_action(admin_client, PRODUCTS_URL, "generate_model_images", [make_product().pk])
    assert page.status_code == 200
    assert 'name="preset"' not in html_of(page)


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_choosing_a_preset_uses_its_options_even_with_invalid_manual_fields(
    simulator, admin_client, make_product, presets, run_jobs
):
    products = [make_product(), make_product()]
    preset = presets["beach"]
    data = {
        "ids": [str(p.pk) for p in products],
        "confirm": "Generate",
        "preset": str(preset.pk),
        # the manual fields are empty or wrong: the preset decides
        "mode": "prompt",
        "prompt": "",
        "image_count": "99",
    }
    response = admin_client.post(reverse(CONFIRM_URL), data)

    assert response.status_code == 302, html_of(response)
    tasks = list(ModelImageTask.objects.order_by("object_id"))
    assert len(tasks) == 2
    for task in tasks:
        assert task.preset_id == preset.pk
        assert task.mode == GenerationMode.TEMPLATE
        assert (task.human_template_id, task.scene_template_id) == ("h-002", "s-003")
        assert task.image_count == 3 and task.prompt == ""

    run_jobs()
    assert len(simulator.submissions) == 2
    for submission in simulator.submissions:
        assert submission["template"]["human_template_id"] == "h-002"
        assert submission["template"]["scene_template_id"] == "s-003"
        assert submission["image_count"] == 3
        assert "prompt" not in submission


@pytest.mark.django_db
def test_choosing_a_prompt_preset_uses_its_prompt(admin_client, make_product, presets):
    product = make_product()
    response = admin_client.post(
        reverse(CONFIRM_URL),
        {"ids": [str(product.pk)], "preset": str(presets["park"].pk), "image_count": ""},
    )
    assert response.status_code == 302
    task = ModelImageTask.objects.get()
    assert task.preset == presets["park"]
    assert (task.mode, task.prompt, task.image_count) == (
        "prompt",
        "A model walking in a sunny park",
        1,
    )
    assert not task.human_template_id and not task.scene_template_id


@pytest.mark.django_db
def test_an_inactive_preset_cannot_be_chosen_on_the_page(admin_client, make_product, presets):
    product = make_product()
    response = admin_client.post(
        reverse(CONFIRM_URL), {"ids": [str(product.pk)], "preset": str(presets["retired"].pk)}
    )
    assert response.status_code == 200
    assert "preset" in response.context["form"].errors
    assert ModelImageTask.objects.count() == 0


# -- 3. the API ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_api_create_with_a_preset_uses_it(api, make_product, presets):
    product = make_product()
    response = api.post(
        f"{API}tasks/",
        {"product": product_ref(product), "preset": presets["beach"].pk},
        format="json",
    )
    assert response.status_code == 201, response.content
    data = response.json()
    assert data["preset"] == presets["beach"].pk
    assert data["mode"] == "template" and data["image_count"] == 3
    assert data["template"]["human_template_id"] == "h-002"
    task = ModelImageTask.objects.get()
    assert task.preset == presets["beach"]
    assert (task.human_template_id, task.scene_template_id, task.image_count) == (
        "h-002",
        "s-003",
        3,
    )


@pytest.mark.django_db
def test_api_create_for_an_image_url_with_a_preset_records_it(api, presets):
    response = api.post(
        f"{API}tasks/",
        {"image": "https://images.example.com/dress.jpg", "preset": presets["park"].pk},
        format="json",
    )
    assert response.status_code == 201, response.content
    task = ModelImageTask.objects.get()
    assert (task.mode, task.prompt, task.image_count) == (
        "prompt",
        "A model walking in a sunny park",
        1,
    )
    assert task.preset == presets["park"], "the task does not record its preset"
    assert response.json()["preset"] == presets["park"].pk


@pytest.mark.django_db
def test_api_bulk_with_a_preset_uses_it(api, make_product, presets):
    products = [make_product() for _ in range(3)]
    response = api.post(
        f"{API}tasks/bulk/",
        {"products": [product_ref(p) for p in products], "preset": presets["park"].pk},
        format="json",
    )
    assert response.status_code == 201, response.content
    data = response.json()
    assert len(data["ids"]) == 3 and data["pictures"] == 3 and data["dry_run"] is False
    tasks = ModelImageTask.objects.all()
    assert {str(t.pk) for t in tasks} == set(data["ids"])
    assert all(t.preset == presets["park"] for t in tasks)
    assert all(t.mode == "prompt" and t.prompt == presets["park"].prompt for t in tasks)
    assert all(t.image_count == 1 for t in tasks)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "extra",
    [
        pytest.param({"prompt": "a model on a beach"}, id="prompt"),
        pytest.param(
            {"template": {"human_template_id": "h-001", "scene_template_id": "s-001"}},
            id="template",
        ),
    ],
)
@pytest.mark.parametrize("endpoint", ["tasks/", "tasks/bulk/"])
def test_api_preset_plus_options_is_refused(api, make_product, presets, extra, endpoint):
    product = make_product()
    body = {"preset": presets["beach"].pk, **extra}
    if endpoint == "tasks/":
        body["product"] = product_ref(product)
    else:
        body["products"] = [product_ref(product)]
    response = api.post(f"{API}{endpoint}", body, format="json")
    assert response.status_code == 400, response.content
    assert "preset" in response.json()
    assert ModelImageTask.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize("endpoint", ["tasks/", "tasks/bulk/"])
def test_api_inactive_preset_is_refused(api, make_product, presets, endpoint):
    product = make_product()
    body = {"preset": presets["retired"].pk}
    if endpoint == "tasks/":
        body["product"] = product_ref(product)
    else:
        body["products"] = [product_ref(product)]
    response = api.post(f"{API}{endpoint}", body, format="json")
    assert response.status_code == 400, response.content
    assert "preset" in response.json()
    assert ModelImageTask.objects.count() == 0


@pytest.mark.django_db
def test_api_presets_endpoint_lists_active_presets(api, presets):
    response = api.get(f"{API}presets/")
    assert response.status_code == 200, response.content
    results = response.json()["results"]
    assert [item["name"] for item in results] == ["Beach look", "Park prompt"]
    beach = results[0]
    assert beach["id"] == presets["beach"].pk
    assert (beach["human_template_id"], beach["scene_template_id"]) == ("h-002", "s-003")
    assert beach["image_count"] == 3 and beach["mode"] == "template"
    assert results[1]["prompt"] == "A model walking in a sunny park"
    assert results[1]["human_template_id"] is None
    assert api.get(f"{API}presets/{presets['retired'].pk}/").status_code == 404


@pytest.mark.django_db(transaction=True)
def test_api_bulk_dry_run_counts_pictures_and_credits_and_creates_nothing(
    api, settings, make_product, presets
):
    settings.HIDREAM_CREDITS_PER_IMAGE = 2.5
    products = [make_product() for _ in range(3)]
    refs = [product_ref(p) for p in products]

    response = api.post(
        f"{API}tasks/bulk/",
        {"products": refs, "preset": presets["beach"].pk, "dry_run": True},
        format="json",
    )
    assert response.status_code == 200, response.content
    assert response.json() == {
        "batch": None,
        "ids": [],
        "pictures": 9,
        "credits": 22.5,
        "dry_run": True,
    }

    response = api.post(
        f"{API}tasks/bulk/",
        {"products": refs, "prompt": "A model in a cafe", "image_count": 4, "dry_run": True},
        format="json",
    )
    assert response.status_code == 200, response.content
    assert response.json()["pictures"] == 12 and response.json()["credits"] == 30.0
    assert ModelImageTask.objects.count() == 0
    assert jobs.pending_jobs() == []


# -- 4. credit estimates and totals ----------------------------------------------------------


@pytest.mark.django_db
def test_generate_page_shows_the_credit_estimate_only_when_set(
    admin_client, settings, make_product
):
    ids = [make_product().pk for _ in range(3)]
    settings.HIDREAM_CREDITS_PER_IMAGE = 2.5
    html = html_of(post_action(admin_client, PRODUCTS_URL, "generate_model_images", ids))
    summary = chunk(html, 'class="hidream-summary"', "</p>")
    assert "credits" in summary
    assert '≈ <strong class="hidream-c">15</strong> credits' in summary  # 3 × 2 × 2.5
    assert 'data-per-image="2.5"' in summary

    settings.HIDREAM_CREDITS_PER_IMAGE = None
    html = html_of(post_action(admin_client, PRODUCTS_URL, "generate_model_images", ids))
    summary = chunk(html, 'class="hidream-summary"', "</p>")
    assert "credits" not in summary and "≈" not in summary
    assert "hidream-credits" not in html


def stored_picture(task, position):
    image = GeneratedImage(
        task=task,
        sub_task_id=f"{task.pk}-{position}",
        position=position,
        status=ImageStatus.STORED,
        remote_status=1,
        progress=1.0,
        width=300,
        height=400,
        stored_at=timezone.now(),
    )
    image.file.save(f"t/{task.pk}-{position}.png", ContentFile(make_image_bytes(fmt="PNG")),
                    save=False)  # fmt: skip
    image.save()
    return image


@pytest.mark.django_db
def test_task_list_shows_totals_for_the_filtered_period(admin_client, settings, make_product):
    settings.HIDREAM_CREDITS_PER_IMAGE = 2.5

    def make(count, days_ago):
        options = services.GenerationOptions.validated({"prompt": "x", "image_count": count})
        task = services.create_tasks_for_products([make_product()], options).tasks[0]
        ModelImageTask.objects.filter(pk=task.pk).update(
            created_at=timezone.now() - dt.timedelta(days=days_ago)
        )
        return task

    recent_a, recent_b = make(2, 1), make(3, 2)
    old = make(4, 30)
    stored_picture(recent_a, 0)
    stored_picture(old, 0)
    stored_picture(old, 1)
    GeneratedImage.objects.create(task=recent_b, sub_task_id="pending", position=0)

    # The "Past 7 days" choice of the task list's created_at date filter, as the page links it.
    unfiltered = admin_client.get(reverse(TASKS_URL))
    [date_filter] = [
        spec
        for spec in unfiltered.context["cl"].filter_specs
        if getattr(spec, "field_path", "") == "created_at"
    ]
    [query] = [
        choice["query_string"]
        for choice in date_filter.choices(unfiltered.context["cl"])
        if str(choice["display"]) == "Past 7 days"
    ]
    params = {key: value for key, value in parse_qsl(query.lstrip("?"))}
    assert set(params) == {"created_at__gte", "created_at__lt"}, params
    response = admin_client.get(reverse(TASKS_URL), params)

    assert response.status_code == 200
    assert {t.pk for t in response.context["cl"].result_list} == {recent_a.pk, recent_b.pk}
    assert response.context.get("hidream_totals"), "the task list has no hidream_totals"
    html = html_of(response)
    assert "In this view: 2 tasks, 5 pictures asked for, 1 stored" in html
    assert "≈ 12.5 credits" in html

    everything = admin_client.get(reverse(TASKS_URL))
    assert "In this view: 3 tasks, 9 pictures asked for, 3 stored" in html_of(everything)
    settings.HIDREAM_CREDITS_PER_IMAGE = None
    unpriced = html_of(admin_client.get(reverse(TASKS_URL), params))
    assert "In this view: 2 tasks, 5 pictures asked for, 1 stored" in unpriced
    assert "credits" not in chunk(unpriced, 'class="hidream-totals"', "</p>")


@pytest.mark.django_db
def test_generate_permission_needed_for_the_presets_api_create(make_product, presets):
    user = get_user_model().objects.create_user("viewer", password="pw", is_staff=True)
    user.user_permissions.add(
        Permission.objects.get(
            content_type__app_label="hidream_models", codename="view_hidreampreset"
        )
    )
    client = APIClient()
    client.force_authenticate(user)
    assert client.get(f"{API}presets/").status_code == 200
    response = client.post(
        f"{API}tasks/",
        {"product": product_ref(make_product()), "preset": presets["beach"].pk},
        format="json",
    )
    assert response.status_code == 403
    assert ModelImageTask.objects.count() == 0
