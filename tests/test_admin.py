"""The Django admin integration: the generate action and page, the task admin, callbacks.

Everything goes through Django's test client against the demo project's admin; where HiDream
is involved it is the real simulator on loopback (``simulator`` fixture), and background jobs
run through ``run_jobs`` as a worker would.
"""

from __future__ import annotations

import io
import re
import uuid
import warnings

import pytest
from django.conf import settings as django_settings
from django.contrib import admin, messages
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.contrib.messages import get_messages
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils.deprecation import RemovedInDjango2028Warning
from PIL import Image

from hidream_models import services
from hidream_models.models import (
    CallbackEvent,
    GenerationMode,
    HiDreamTemplate,
    ImageStatus,
    ModelImageTask,
    TaskStatus,
    TemplateKind,
)
from hidream_models.services.templates import sync_templates
from shop_demo.catalog.admin import ProductAdmin
from shop_demo.catalog.models import Product
from tests import jobs
from tests.conftest import wait_for

GENERATE_TEMPLATE = "hidream_models/admin/generate_model_images.html"
PRODUCTS_URL = "admin:catalog_product_changelist"
CONFIRM_URL = "admin:catalog_product_hidream_generate"
TASKS_URL = "admin:hidream_models_modelimagetask_changelist"
TASK_ACTIONS = ("refresh_from_hidream", "retry_failed_tasks", "resend_unconfirmed_tasks")
PRODUCT_PERMS = ("catalog.view_product", "catalog.change_product")
GENERATE_PERMS = (
    "hidream_models.generate",
    "hidream_models.view_modelimagetask",
    *PRODUCT_PERMS,
)


# -- helpers ---------------------------------------------------------------------------------



def posted_ids(html: str) -> set[str]:
    """The product ids the generate page will post (one comma-joined hidden field)."""
    values = re.findall(r'name="ids" value="([^"]*)"', html)
    return {pk for value in values for pk in value.split(",") if pk}

def make_staff(username, perms=()):
    user = get_user_model().objects.create_user(username, password="pw", is_staff=True)
    for name in perms:
        app_label, codename = name.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    return user


def html_of(response) -> str:
    return response.content.decode()


def messages_of(response) -> list[tuple[int, str]]:
    return [(m.level, str(m)) for m in get_messages(response.wsgi_request)]


def templates_used(response) -> list[str]:
    return [t.name for t in getattr(response, "templates", [])]


def post_action(client, url_name, action, ids, **extra):
    data = {"action": action, "index": "0", "_selected_action": [str(pk) for pk in ids], **extra}
    return client.post(reverse(url_name), data)


def form_data(ids, *, human=None, scene=None, **fields):
    data = {"ids": [str(pk) for pk in ids], "confirm": "Generate", "image_count": "2"}
    if human is not None or scene is not None:
        data["mode"] = GenerationMode.TEMPLATE
        data["human_template"] = "" if human is None else str(human.pk)
        data["scene_template"] = "" if scene is None else str(scene.pk)
    data.update(fields)
    return data


def confirm(client, data):
    return client.post(reverse(CONFIRM_URL), data)


def chunk(html: str, start: str, end: str) -> str:
    """The part of ``html`` from ``start`` to the next ``end`` after it (for "beside fields")."""
    begin = html.index(start)
    return html[begin : html.index(end, begin + len(start))]


FIELD_ROWS = {
    "human_template": ('id="picker-human_template"', "</fieldset>"),
    "scene_template": ('id="picker-scene_template"', "</fieldset>"),
    "prompt": ("hidream-prompt-fields", "</div>"),
    "image_count": ('for="id_image_count"', "</div>"),
    "mask": ('for="id_mask"', "</div>"),
}


def assert_field_error(response, field: str, text: str) -> None:
    """The page was re-rendered with ``text`` in the error list right beside ``field``."""
    assert response.status_code == 200
    assert GENERATE_TEMPLATE in templates_used(response)
    html = html_of(response)
    assert "Please correct the errors below." in html
    row = chunk(html, *FIELD_ROWS[field])
    assert 'class="errorlist' in row, f"no error list beside {field}"
    assert text in row, f"{text!r} not beside {field}: {row}"
    assert any(text in e for e in response.context["form"].errors.get(field, []))


def png_bytes(size=(60, 80)) -> bytes:
    out = io.BytesIO()
    Image.new("L", size, 255).save(out, "PNG")
    return out.getvalue()


def thumb_srcs(html: str, css_class: str = "hidream-thumb") -> list[str]:
    return [
        src
        for tag in re.findall(r"<img\b[^>]*>", html)
        if f'class="{css_class}"' in tag
        for src in re.findall(r'src="([^"]+)"', tag)
    ]


def stored_name(url: str) -> str:
    assert url.startswith(django_settings.MEDIA_URL), url
    return url.removeprefix(django_settings.MEDIA_URL)


def job_names() -> list[str]:
    return [job.task.name for job in jobs.pending_jobs()]


def template_options(**overrides):
    data = {
        "template": {"human_template_id": "h-001", "scene_template_id": "s-001"},
        "image_count": 2,
        **overrides,
    }
    return services.GenerationOptions.validated(data)


def make_task(product, status=TaskStatus.QUEUED, **fields):
    """A task created the way the app creates them, then put into ``status``."""
    task = services.create_tasks_for_products([product], template_options()).tasks[0]
    ModelImageTask.objects.filter(pk=task.pk).update(status=status, **fields)
    task.refresh_from_db()
    return task


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture
def local_templates(db):
    """Template rows as a sync would leave them (no HiDream call needed for form checks)."""
    human = HiDreamTemplate.objects.create(
        kind=TemplateKind.HUMAN, remote_id="h-001", name_en="Urban woman", gender="Woman"
    )
    scene = HiDreamTemplate.objects.create(
        kind=TemplateKind.SCENE,
        remote_id="s-001",
        name_en="City street",
        scenes_type="outdoor scenes",
    )
    return human, scene


@pytest.fixture
def superuser(db):
    return get_user_model().objects.create_superuser("boss", "boss@example.com", "pw")


@pytest.fixture
def admin_client(client, superuser):
    client.force_login(superuser)
    return client


@pytest.fixture
def generator_client(client, db):
    client.force_login(make_staff("maker", GENERATE_PERMS))
    return client


# -- 1. permissions --------------------------------------------------------------------------


@pytest.mark.django_db
def test_without_generate_permission_the_action_is_hidden_and_refused(
    client, make_product, local_templates
):
    client.force_login(make_staff("viewer", PRODUCT_PERMS))
    products = [make_product() for _ in range(3)]
    ids = [p.pk for p in products]

    changelist = client.get(reverse(PRODUCTS_URL))
    assert changelist.status_code == 200
    assert "generate_model_images" not in html_of(changelist)
    action_form = changelist.context.get("action_form")
    if action_form is not None:
        choices = [value for value, _label in action_form.fields["action"].choices]
        assert "generate_model_images" not in choices

    forced = post_action(client, PRODUCTS_URL, "generate_model_images", ids)
    assert GENERATE_TEMPLATE not in templates_used(forced)
    assert "hidream-generate" not in html_of(forced)
    assert "products selected" not in html_of(forced)

    human, scene = local_templates
    refused = confirm(client, form_data(ids, human=human, scene=scene))
    assert refused.status_code == 403
    assert ModelImageTask.objects.count() == 0
    assert LogEntry.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_with_generate_permission_the_action_renders_the_page_and_confirm_creates_tasks(
    generator_client, make_product, local_templates
):
    client = generator_client
    products = [make_product() for _ in range(3)]
    ids = [p.pk for p in products]

    changelist = client.get(reverse(PRODUCTS_URL))
    assert 'value="generate_model_images"' in html_of(changelist)

    page = post_action(client, PRODUCTS_URL, "generate_model_images", ids)
    assert page.status_code == 200
    assert GENERATE_TEMPLATE in templates_used(page)
    html = html_of(page)
    crumbs = chunk(html, 'class="breadcrumbs"', "</div>")
    assert reverse("admin:index") in crumbs
    assert reverse(PRODUCTS_URL) in crumbs
    assert "Generate model images with HiDream" in crumbs
    assert "3 products selected" in html
    listing = chunk(html, 'class="hidream-products"', "</ul>")
    for product in products:
        assert f"<span>{product.name}</span>" in listing
        assert f'src="{product.image.url}"' in listing
        assert str(product.pk) in posted_ids(html)
    assert f'action="{reverse(CONFIRM_URL)}"' in html

    human, scene = local_templates
    response = confirm(client, form_data(ids, human=human, scene=scene))
    assert response.status_code == 302
    tasks = ModelImageTask.objects.all()
    assert sorted(int(t.object_id) for t in tasks) == sorted(ids)
    assert all(t.status == TaskStatus.QUEUED and t.image_count == 2 for t in tasks)
    assert all(t.created_by.username == "maker" for t in tasks)
    assert "dispatch_submissions" in job_names()
    followed = client.get(response["Location"])
    assert followed.status_code == 200


@pytest.mark.django_db
def test_confirm_url_answers_get_with_a_redirect(generator_client):
    response = generator_client.get(reverse(CONFIRM_URL))
    assert response.status_code == 302
    assert response["Location"] == reverse(PRODUCTS_URL)


# -- 2. form validation ----------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("fields", "field", "text"),
    [
        pytest.param({"drop": "human"}, "human_template", "Choose a model.", id="no-human"),
        pytest.param({"drop": "scene"}, "scene_template", "Choose a scene.", id="no-scene"),
        pytest.param(
            {"mode": "prompt", "prompt": ""},
            "prompt",
            "Write a prompt, or choose templates instead.",
            id="empty-prompt",
        ),
        pytest.param(
            {"mode": "prompt", "prompt": "   "},
            "prompt",
            "Write a prompt, or choose templates instead.",
            id="blank-prompt",
        ),
        pytest.param(
            {"mode": "prompt", "prompt": "x" * 501},
            "prompt",
            "at most 500 characters (it has 501)",
            id="prompt-501",
        ),
        pytest.param({"image_count": "0"}, "image_count", "greater than or equal to 1", id="0"),
        pytest.param({"image_count": "5"}, "image_count", "less than or equal to 4", id="5"),
    ],
)
def test_invalid_form_rerenders_the_page_with_errors_beside_fields(
    admin_client, make_product, local_templates, fields, field, text
):
    human, scene = local_templates
    products = [make_product(), make_product()]
    ids = [p.pk for p in products]
    fields = dict(fields)
    drop = fields.pop("drop", None)
    if fields.get("mode") == "prompt":
        data = form_data(ids, **fields)
    else:
        data = form_data(
            ids,
            human=None if drop == "human" else human,
            scene=None if drop == "scene" else scene,
            **fields,
        )
        if drop:
            data[f"{drop}_template"] = ""
    response = confirm(admin_client, data)
    assert_field_error(response, field, text)
    html = html_of(response)
    for product in products:  # the page still carries the selection for the next try
        assert str(product.pk) in posted_ids(html)
    assert ModelImageTask.objects.count() == 0


@pytest.mark.django_db
def test_template_mode_without_any_template_reports_both(
    admin_client, make_product, local_templates
):
    product = make_product()
    data = form_data([product.pk], mode=GenerationMode.TEMPLATE)
    response = confirm(admin_client, data)
    assert_field_error(response, "human_template", "Choose a model.")
    assert_field_error(response, "scene_template", "Choose a scene.")
    assert ModelImageTask.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("fields", "count", "prompt_length"),
    [
        pytest.param({"mode": "prompt", "prompt": "y" * 500}, 2, 500, id="prompt-500"),
        pytest.param({"mode": "prompt", "prompt": "a walk", "image_count": "1"}, 1, 6, id="1"),
        pytest.param({"mode": "prompt", "prompt": "a walk", "image_count": "4"}, 4, 6, id="4"),
    ],
)
def test_limits_that_are_fine_create_tasks(
    admin_client, make_product, fields, count, prompt_length
):
    products = [make_product(), make_product()]
    response = confirm(admin_client, form_data([p.pk for p in products], **fields))
    assert response.status_code == 302, response.context and response.context["form"].errors
    tasks = list(ModelImageTask.objects.all())
    assert len(tasks) == 2
    assert {t.image_count for t in tasks} == {count}
    assert {len(t.prompt) for t in tasks} == {prompt_length}
    assert (
        messages.SUCCESS,
        f"2 products sent to HiDream: {2 * count} pictures on the way.",
    ) in messages_of(response)


@pytest.mark.django_db
def test_template_mode_with_both_templates_and_counts_one_and_four(
    admin_client, make_product, local_templates
):
    human, scene = local_templates
    for count in ("1", "4"):
        product = make_product()
        response = confirm(
            admin_client, form_data([product.pk], human=human, scene=scene, image_count=count)
        )
        assert response.status_code == 302
        task = ModelImageTask.objects.get(object_id=str(product.pk))
        assert task.image_count == int(count)
        assert (task.mode, task.human_template_id, task.scene_template_id) == (
            GenerationMode.TEMPLATE,
            "h-001",
            "s-001",
        )


@pytest.mark.django_db
def test_a_mask_that_is_not_an_image_is_refused(admin_client, make_product, local_templates):
    human, scene = local_templates
    product = make_product()
    data = form_data([product.pk], human=human, scene=scene)
    data["mask"] = SimpleUploadedFile("mask.png", b"this is not a picture", "image/png")
    response = confirm(admin_client, data)
    assert_field_error(response, "mask", "not an image")
    assert ModelImageTask.objects.count() == 0


@pytest.mark.django_db
def test_a_real_mask_is_kept_on_the_task(admin_client, make_product, local_templates):
    human, scene = local_templates
    product = make_product()
    data = form_data([product.pk], human=human, scene=scene)
    data["mask"] = SimpleUploadedFile("mask.png", png_bytes(), "image/png")
    response = confirm(admin_client, data)
    assert response.status_code == 302
    task = ModelImageTask.objects.get()
    assert task.mask.name
    with default_storage.open(task.mask.name, "rb") as fh:
        assert fh.read() == png_bytes()


@pytest.mark.django_db
def test_mask_field_only_when_exactly_one_product(admin_client, make_product, local_templates):
    one, two = make_product(), make_product()

    single = post_action(admin_client, PRODUCTS_URL, "generate_model_images", [one.pk])
    assert single.status_code == 200
    assert 'name="mask"' in html_of(single)
    assert "mask" in single.context["form"].fields

    several = post_action(admin_client, PRODUCTS_URL, "generate_model_images", [one.pk, two.pk])
    assert several.status_code == 200
    assert 'name="mask"' not in html_of(several)
    assert "mask" not in several.context["form"].fields

    # A mask smuggled in for several products is not used (the field does not exist).
    human, scene = local_templates
    data = form_data([one.pk, two.pk], human=human, scene=scene)
    data["mask"] = SimpleUploadedFile("mask.png", png_bytes(), "image/png")
    response = confirm(admin_client, data)
    assert response.status_code == 302
    assert [t.mask.name for t in ModelImageTask.objects.all()] == ["", ""]


# -- 3. tampered and foreign ids -------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("kind", ["missing", "non-numeric", "excluded", "empty"])
def test_tampered_ids_refuse_the_whole_run(
    admin_client, make_product, local_templates, monkeypatch, kind
):
    good, other = make_product(), make_product()
    if kind == "missing":
        bad = str(Product.objects.order_by("-pk").first().pk + 1000)
    elif kind == "non-numeric":
        bad = "abc"
    elif kind == "empty":
        bad = ""
    else:
        original = ProductAdmin.get_queryset

        def get_queryset(self, request):
            return original(self, request).exclude(pk=other.pk)

        monkeypatch.setattr(ProductAdmin, "get_queryset", get_queryset)
        bad = str(other.pk)
    ids = [good.pk, bad] if kind != "empty" else [bad]
    human, scene = local_templates
    response = confirm(admin_client, form_data(ids, human=human, scene=scene))
    assert response.status_code == 302
    assert response["Location"] == reverse(PRODUCTS_URL)
    errors = [text for level, text in messages_of(response) if level == messages.ERROR]
    assert len(errors) == 1 and "nothing was generated" in errors[0]
    assert ModelImageTask.objects.count() == 0
    assert LogEntry.objects.count() == 0
    assert jobs.pending_jobs() == []


# -- 4. confirm ------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_confirm_creates_tasks_skips_products_without_image_and_logs(
    admin_client, superuser, make_product, local_templates
):
    human, scene = local_templates
    first, second = make_product(), make_product()
    bare = make_product(with_image=False, name="Scarf without photo")
    earlier = make_task(make_product(), status=TaskStatus.SUCCEEDED)  # another batch
    jobs.clear_jobs()

    page = post_action(
        admin_client, PRODUCTS_URL, "generate_model_images", [first.pk, second.pk, bare.pk]
    )
    html = html_of(page)
    assert "2 products selected" in html
    assert "1 product has no image and will be skipped." in html
    assert "no image" in chunk(html, 'class="hidream-products"', "</ul>")

    response = confirm(
        admin_client,
        form_data([first.pk, second.pk, bare.pk], human=human, scene=scene, image_count="3"),
    )
    assert response.status_code == 302
    tasks = ModelImageTask.objects.exclude(pk=earlier.pk)
    assert sorted(t.object_id for t in tasks) == sorted([str(first.pk), str(second.pk)])
    batch = tasks[0].batch
    assert isinstance(batch, uuid.UUID) and {t.batch for t in tasks} == {batch}
    assert response["Location"] == f"{reverse(TASKS_URL)}?batch={batch}"

    got = messages_of(response)
    assert (messages.SUCCESS, "2 products sent to HiDream: 6 pictures on the way.") in got
    assert (messages.WARNING, "Skipped “Scarf without photo”: it has no image.") in got

    entries = LogEntry.objects.filter(user=superuser)
    product_type = ContentType.objects.get_for_model(Product)
    assert sorted(e.object_id for e in entries) == sorted([str(first.pk), str(second.pk)])
    for entry in entries:
        assert entry.action_flag == CHANGE
        assert entry.content_type == product_type
        assert "Started HiDream model images: 3 pictures each." in entry.get_change_message()

    # One enqueue for the lot, after commit.
    assert job_names() == ["dispatch_submissions"]
    assert sorted(jobs.pending_jobs()[0].args[0]) == sorted(str(t.pk) for t in tasks)

    listing = admin_client.get(response["Location"])
    assert listing.status_code == 200
    shown = {str(t.pk) for t in listing.context["cl"].result_list}
    assert shown == {str(t.pk) for t in tasks}


@pytest.mark.django_db(transaction=True)
def test_confirm_with_only_products_without_image_fails_nothing(
    admin_client, make_product, local_templates
):
    human, scene = local_templates
    bare = make_product(with_image=False, name="Bare")
    response = confirm(admin_client, form_data([bare.pk], human=human, scene=scene))
    assert response.status_code == 302
    assert response["Location"] == reverse(PRODUCTS_URL)
    assert (messages.WARNING, "Skipped “Bare”: it has no image.") in messages_of(response)
    assert not any(level == messages.ERROR for level, _ in messages_of(response))
    assert ModelImageTask.objects.count() == 0
    assert LogEntry.objects.count() == 0
    assert jobs.pending_jobs() == []


# -- 5. the whole walk with the simulator ----------------------------------------------------


def _settle(batch, run_jobs):
    def settled():
        services.sync_pass()
        run_jobs()
        tasks = list(ModelImageTask.objects.filter(batch=batch))
        return bool(tasks) and all(t.is_final for t in tasks)

    wait_for(settled, timeout=20, interval=0.3, message="the tasks to finish")
    return list(ModelImageTask.objects.filter(batch=batch).order_by("object_id"))


def _assert_task_pages(client, task, count):
    images = list(task.images.order_by("position"))
    assert len(images) == count
    assert all(image.status == ImageStatus.STORED for image in images)
    urls = [image.file.url for image in images]
    for url in urls:
        assert default_storage.exists(stored_name(url))

    page = client.get(reverse("admin:hidream_models_modelimagetask_change", args=[task.pk]))
    assert page.status_code == 200
    html = html_of(page)
    assert thumb_srcs(html, "hidream-large") == urls
    assert "What was sent" in html
    editable = (
        "mode",
        "human_template_id",
        "scene_template_id",
        "prompt",
        "image_count",
        "source_image",
        "source_url",
        "status",
        "remote_task_id",
        "error_message",
        "batch",
        "sub_task_ids",
        "mask",
        "retry_of",
        "created_by",
    )
    for name in editable:
        assert f'name="{name}"' not in html, f"{name} is editable on the task page"
    assert not re.search(
        r'<(input|textarea|select)\b[^>]*name="(?!csrf|_|callback_events|next|decision)', html
    ), "the task page has editable inputs"
    assert task.remote_task_id in html
    assert task.source_sha256 and task.source_sha256 in html
    return html


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_whole_walk_in_template_mode(simulator, settings, admin_client, make_product, run_jobs):
    settings.HIDREAM_CALLBACK_BASE_URL = ""
    settings.HIDREAM_POLL_INTERVAL = 1
    report = sync_templates()
    assert report.created == 12 and not report.preview_errors
    products = [make_product() for _ in range(3)]
    ids = [p.pk for p in products]

    page = post_action(admin_client, PRODUCTS_URL, "generate_model_images", ids)
    assert page.status_code == 200
    html = html_of(page)
    assert "3 products selected" in html
    human = HiDreamTemplate.objects.get(kind=TemplateKind.HUMAN, remote_id="h-001")
    scene = HiDreamTemplate.objects.get(kind=TemplateKind.SCENE, remote_id="s-001")
    assert human.preview and f'src="{human.preview.url}"' in html
    assert scene.preview and f'src="{scene.preview.url}"' in html
    assert "Urban woman" in html

    response = confirm(admin_client, form_data(ids, human=human, scene=scene))
    assert response.status_code == 302
    batch = ModelImageTask.objects.first().batch
    assert response["Location"].endswith(f"?batch={batch}")

    ran = run_jobs()
    assert ran.count("submit_model_image") == 3
    assert len(simulator.submissions) == 3
    assert {
        (s["template"]["human_template_id"], s["template"]["scene_template_id"])
        for s in simulator.submissions
    } == {("h-001", "s-001")}

    tasks = _settle(batch, run_jobs)
    assert [t.status for t in tasks] == [TaskStatus.SUCCEEDED] * 3

    listing = admin_client.get(response["Location"])
    assert listing.status_code == 200
    html = html_of(listing)
    all_urls = {image.file.url for t in tasks for image in t.images.all()}
    assert len(all_urls) == 6
    srcs = thumb_srcs(html)
    assert set(srcs) == all_urls and len(srcs) == 6
    assert html.count("2 of 2") == 3
    assert "autorefresh.js" not in html

    for task in tasks:
        page_html = _assert_task_pages(admin_client, task, 2)
        assert "h-001" in page_html and "s-001" in page_html

    product = Product.objects.get(pk=tasks[0].object_id)
    change = admin_client.get(reverse("admin:catalog_product_change", args=[product.pk]))
    assert change.status_code == 200
    html = html_of(change)
    assert "HiDream model images" in html
    inline = html[html.index("HiDream model images") :]
    for image in tasks[0].images.all():
        assert f'src="{image.file.url}"' in inline
    assert "2 of 2" in inline and "Succeeded" in inline
    assert reverse("admin:hidream_models_modelimagetask_change", args=[tasks[0].pk]) in inline


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_whole_walk_in_prompt_mode(simulator, settings, admin_client, make_product, run_jobs):
    settings.HIDREAM_CALLBACK_BASE_URL = ""
    settings.HIDREAM_POLL_INTERVAL = 1
    product = make_product()
    prompt = "A model walking through a sunny park & smiling"
    page = post_action(admin_client, PRODUCTS_URL, "generate_model_images", [product.pk])
    assert "1 product selected" in html_of(page)
    response = confirm(
        admin_client, form_data([product.pk], mode="prompt", prompt=prompt, image_count="1")
    )
    assert response.status_code == 302
    run_jobs()
    assert simulator.submissions[-1]["prompt"] == prompt
    assert "template" not in simulator.submissions[-1]
    [task] = _settle(ModelImageTask.objects.get().batch, run_jobs)
    assert task.status == TaskStatus.SUCCEEDED
    html = _assert_task_pages(admin_client, task, 1)
    assert "A model walking through a sunny park &amp; smiling" in html
    listing = html_of(admin_client.get(response["Location"]))
    assert "1 of 1" in listing
    assert thumb_srcs(listing) == [task.images.get().file.url]


# -- 6. task admin actions -------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_refresh_from_hidream_enqueues_a_sync_for_a_submitted_task(
    simulator, admin_client, make_product, run_jobs
):
    task = services.create_tasks_for_products([make_product()], template_options()).tasks[0]
    run_jobs()
    task.refresh_from_db()
    assert task.status == TaskStatus.SUBMITTED and task.remote_task_id
    assert task.last_polled_at is None

    response = post_action(admin_client, TASKS_URL, "refresh_from_hidream", [task.pk])
    assert response.status_code == 302
    assert job_names() == ["sync_model_image_task"]
    assert list(jobs.pending_jobs()[0].args) == [str(task.pk)]
    assert (messages.SUCCESS, "Asked HiDream about 1 task.") in messages_of(response)
    run_jobs()
    task.refresh_from_db()
    assert task.last_polled_at is not None


@pytest.mark.django_db(transaction=True)
def test_refresh_from_hidream_on_a_queued_task_warns(admin_client, make_product):
    task = make_task(make_product(), status=TaskStatus.QUEUED)
    jobs.clear_jobs()
    response = post_action(admin_client, TASKS_URL, "refresh_from_hidream", [task.pk])
    assert response.status_code == 302
    got = messages_of(response)
    warnings = [text for level, text in got if level == messages.WARNING]
    assert len(warnings) == 1 and "Queued" in warnings[0]
    assert not any(level == messages.SUCCESS for level, _ in got)
    assert "sync_model_image_task" not in job_names()


@pytest.mark.django_db(transaction=True)
def test_retry_failed_tasks_makes_a_new_task_and_refuses_unconfirmed(
    admin_client, superuser, make_product
):
    failed = make_task(make_product(), status=TaskStatus.FAILED, error_message="boom")
    unconfirmed = make_task(make_product(), status=TaskStatus.UNCONFIRMED)
    jobs.clear_jobs()

    response = post_action(admin_client, TASKS_URL, "retry_failed_tasks", [failed.pk])
    assert response.status_code == 302
    retry = ModelImageTask.objects.get(retry_of=failed)
    assert retry.status == TaskStatus.QUEUED
    assert (retry.object_id, retry.source_image.name, retry.human_template_id) == (
        failed.object_id,
        failed.source_image.name,
        failed.human_template_id,
    )
    assert retry.created_by == superuser
    assert (messages.SUCCESS, "1 task sent again as a new task.") in messages_of(response)
    assert job_names() == ["dispatch_submissions"]
    jobs.clear_jobs()

    before = ModelImageTask.objects.count()
    response = post_action(admin_client, TASKS_URL, "retry_failed_tasks", [unconfirmed.pk])
    assert response.status_code == 302
    assert ModelImageTask.objects.count() == before
    assert not ModelImageTask.objects.filter(retry_of=unconfirmed).exists()
    warnings = [text for level, text in messages_of(response) if level == messages.WARNING]
    assert len(warnings) == 1 and "unconfirmed" in warnings[0]
    assert jobs.pending_jobs() == []


@pytest.mark.django_db(transaction=True)
def test_resend_unconfirmed_asks_first_then_creates_the_task(admin_client, superuser, make_product):
    unconfirmed = make_task(
        make_product(), status=TaskStatus.UNCONFIRMED, error_message="no answer <b>came</b>"
    )
    jobs.clear_jobs()

    page = post_action(admin_client, TASKS_URL, "resend_unconfirmed_tasks", [unconfirmed.pk])
    assert page.status_code == 200
    assert "hidream_models/admin/resend_unconfirmed.html" in templates_used(page)
    html = html_of(page)
    assert "Yes, send them again" in html
    assert 'name="confirm_resend" value="yes"' in html
    assert f'name="_selected_action" value="{unconfirmed.pk}"' in html
    assert "no answer &lt;b&gt;came&lt;/b&gt;" in html
    assert not ModelImageTask.objects.filter(retry_of=unconfirmed).exists()
    assert jobs.pending_jobs() == []

    response = post_action(
        admin_client, TASKS_URL, "resend_unconfirmed_tasks", [unconfirmed.pk], confirm_resend="yes"
    )
    assert response.status_code == 302
    resent = ModelImageTask.objects.get(retry_of=unconfirmed)
    assert resent.status == TaskStatus.QUEUED and resent.created_by == superuser
    assert (messages.SUCCESS, "1 unconfirmed task sent again.") in messages_of(response)
    assert job_names() == ["dispatch_submissions"]


@pytest.mark.django_db(transaction=True)
def test_resend_unconfirmed_on_other_tasks_warns(admin_client, make_product):
    failed = make_task(make_product(), status=TaskStatus.FAILED)
    response = post_action(admin_client, TASKS_URL, "resend_unconfirmed_tasks", [failed.pk])
    assert response.status_code == 302
    assert (messages.WARNING, "None of the selected tasks is unconfirmed.") in messages_of(response)
    assert not ModelImageTask.objects.filter(retry_of=failed).exists()


@pytest.mark.django_db(transaction=True)
def test_task_actions_are_hidden_without_generate_permission(client, make_product):
    client.force_login(
        make_staff(
            "watcher",
            ("hidream_models.view_modelimagetask", "hidream_models.change_modelimagetask"),
        )
    )
    failed = make_task(make_product(), status=TaskStatus.FAILED)
    submitted = make_task(make_product(), status=TaskStatus.SUBMITTED, remote_task_id="r-1")
    jobs.clear_jobs()

    changelist = client.get(reverse(TASKS_URL))
    assert changelist.status_code == 200
    html = html_of(changelist)
    for action in TASK_ACTIONS:
        assert f'value="{action}"' not in html

    for action, pk in (("refresh_from_hidream", submitted.pk), ("retry_failed_tasks", failed.pk)):
        post_action(client, TASKS_URL, action, [pk])
    resend = post_action(client, TASKS_URL, "resend_unconfirmed_tasks", [failed.pk])
    assert "hidream_models/admin/resend_unconfirmed.html" not in templates_used(resend)
    assert ModelImageTask.objects.count() == 2
    assert jobs.pending_jobs() == []


# -- 7. auto-refresh and escaping ------------------------------------------------------------


@pytest.mark.django_db
def test_task_list_auto_refreshes_only_while_a_task_is_running(admin_client, make_product):
    task = make_task(make_product(), status=TaskStatus.SUBMITTED)
    html = html_of(admin_client.get(reverse(TASKS_URL)))
    assert "hidream_models/autorefresh.js" in html
    assert 'data-seconds="5"' in html

    ModelImageTask.objects.filter(pk=task.pk).update(status=TaskStatus.QUEUED)
    assert "hidream_models/autorefresh.js" in html_of(admin_client.get(reverse(TASKS_URL)))

    for final in (TaskStatus.SUCCEEDED, TaskStatus.PARTIAL, TaskStatus.FAILED):
        ModelImageTask.objects.filter(pk=task.pk).update(status=final)
        response = admin_client.get(reverse(TASKS_URL))
        assert response.status_code == 200
        assert "autorefresh.js" not in html_of(response), final


@pytest.mark.django_db
def test_html_in_product_names_prompts_and_errors_is_escaped(admin_client, make_product):
    evil = "<script>alert(1)</script>"
    product = make_product(name=evil)
    options = services.GenerationOptions.validated(
        {"prompt": '<img src=x onerror="alert(2)">', "image_count": 1}
    )
    task = services.create_tasks_for_products([product], options).tasks[0]
    ModelImageTask.objects.filter(pk=task.pk).update(
        status=TaskStatus.FAILED, error_message="<b onmouseover=alert(3)>bad</b>", error_code=4001
    )

    pages = {
        "task list": admin_client.get(reverse(TASKS_URL)),
        "task page": admin_client.get(
            reverse("admin:hidream_models_modelimagetask_change", args=[task.pk])
        ),
        "product page": admin_client.get(
            reverse("admin:catalog_product_change", args=[product.pk])
        ),
        "generate page": post_action(
            admin_client, PRODUCTS_URL, "generate_model_images", [product.pk]
        ),
    }
    for where, response in pages.items():
        assert response.status_code == 200, where
        html = html_of(response)
        assert evil not in html, where
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html, where
    task_html = html_of(pages["task page"])
    assert "<img src=x" not in task_html
    assert "&lt;img src=x onerror=" in task_html
    assert "<b onmouseover" not in task_html
    assert "&lt;b onmouseover=alert(3)&gt;bad&lt;/b&gt;" in task_html


@pytest.mark.django_db
def test_task_list_search_and_filters_work(admin_client, make_product):
    task = make_task(make_product(name="Blue dress"), status=TaskStatus.FAILED)
    make_task(make_product(name="Red coat"), status=TaskStatus.SUCCEEDED)
    for query in ("?q=Blue", "?q=not-a-uuid", f"?q={task.pk}", "?status__exact=failed"):
        response = admin_client.get(reverse(TASKS_URL) + query)
        assert response.status_code == 200, query
        assert "?e=1" not in response.get("Location", "")
    found = admin_client.get(reverse(TASKS_URL) + "?q=Blue").context["cl"].result_list
    assert [t.pk for t in found] == [task.pk]
    by_id = admin_client.get(reverse(TASKS_URL) + f"?q={task.pk}").context["cl"].result_list
    assert [t.pk for t in by_id] == [task.pk]


# -- 8. callback events ----------------------------------------------------------------------


@pytest.mark.django_db
def test_callback_events_are_read_only(admin_client, make_product):
    task = make_task(make_product(), status=TaskStatus.SUBMITTED, remote_task_id="r-9")
    event = CallbackEvent.objects.create(
        task=task,
        remote_addr="127.0.0.1",
        body='{"code": 0}',
        outcome="applied",
        headers={"Content-Type": "application/json"},
    )
    changelist_url = reverse("admin:hidream_models_callbackevent_changelist")
    add_url = reverse("admin:hidream_models_callbackevent_add")
    change_url = reverse("admin:hidream_models_callbackevent_change", args=[event.pk])

    listing = admin_client.get(changelist_url)
    assert listing.status_code == 200
    assert [e.pk for e in listing.context["cl"].result_list] == [event.pk]
    assert add_url not in html_of(listing)

    assert admin_client.get(add_url).status_code == 403
    assert admin_client.post(add_url, {"task": task.pk, "body": "{}"}).status_code == 403
    assert CallbackEvent.objects.count() == 1

    view = admin_client.get(change_url)
    assert view.status_code == 200
    assert 'name="body"' not in html_of(view)
    assert 'name="outcome"' not in html_of(view)

    tampered = admin_client.post(
        change_url,
        {
            "task": task.pk,
            "body": "tampered",
            "outcome": "invalid",
            "error": "x",
            "remote_addr": "10.0.0.1",
            "headers": "{}",
            "_save": "Save",
        },
    )
    assert tampered.status_code == 403
    event.refresh_from_db()
    assert (event.body, event.outcome, event.error, event.remote_addr) == (
        '{"code": 0}',
        "applied",
        "",
        "127.0.0.1",
    )


# -- Django 6.1 action locations -------------------------------------------------------------


class _ProductAdminWithFormAction(ProductAdmin):
    """A host project's product admin that also has an action on its change form."""

    actions = ("archive",)

    @admin.action(description="Archive", location=admin.ActionLocation.CHANGE_FORM)
    def archive(self, request, queryset):
        return None


@pytest.mark.django_db
def test_the_mixin_keeps_the_host_admins_change_form_actions(
    rf, superuser, admin_client, make_product
):
    """Django 6.1 calls ``get_actions(request, action_location=...)``. The mixin must accept
    it: with the old signature Django warns on every page and drops all change-form actions
    of the host's admin."""
    request = rf.get("/")
    request.user = superuser
    model_admin = _ProductAdminWithFormAction(Product, admin.site)

    def choices(location):
        return [
            name
            for name, _label in model_admin.get_action_choices(
                request, [], action_location=location
            )
        ]

    assert "generate_model_images" in choices(admin.ActionLocation.CHANGE_LIST)
    assert "archive" in choices(admin.ActionLocation.CHANGE_FORM)

    product = make_product()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RemovedInDjango2028Warning)
        assert admin_client.get(reverse(PRODUCTS_URL)).status_code == 200
        change_url = reverse("admin:catalog_product_change", args=[product.pk])
        assert admin_client.get(change_url).status_code == 200


@pytest.mark.django_db
def test_product_page_shows_the_tasks_inline_only_to_task_viewers_and_still_saves(
    client, make_product
):
    product = make_product(name="Green coat")
    task = make_task(product, status=TaskStatus.FAILED)
    change_url = reverse("admin:catalog_product_change", args=[product.pk])
    task_url = reverse("admin:hidream_models_modelimagetask_change", args=[task.pk])

    client.force_login(make_staff("clerk", PRODUCT_PERMS))
    assert task_url not in html_of(client.get(change_url))

    client.force_login(make_staff("editor", GENERATE_PERMS))
    page = client.get(change_url)
    assert page.status_code == 200
    assert "HiDream model images" in html_of(page)
    assert task_url in html_of(page)

    # Saving the product with the read-only task panel on the page works and leaves the task.
    data = {
        "name": "Green coat, long",
        "sku": product.sku,
        "price": "59.00",
        "description": "",
        "_save": "Save",
    }
    for formset in page.context["inline_admin_formsets"]:
        management = formset.formset.management_form
        for name, field in management.fields.items():
            data[management.add_prefix(name)] = management[name].value() or field.initial or 0
    response = client.post(change_url, data)
    assert response.status_code == 302, response.context and [
        f.errors for f in response.context["inline_admin_formsets"]
    ]
    product.refresh_from_db()
    assert product.name == "Green coat, long"
    assert ModelImageTask.objects.filter(pk=task.pk, object_id=str(product.pk)).exists()
