"""Syncing HiDream's template catalogue: the service, the command, the admin button, the API.

HiDream is the real simulator on loopback (``simulator`` fixture); where a test needs a
catalogue the simulator cannot produce (a template that disappears, a broken preview), a
``StubServer`` on loopback serves template pages this module writes, and
``HIDREAM_BASE_URL`` points at it.
"""

from __future__ import annotations

import io
import logging
import re
import socket
from urllib.parse import parse_qs, urlsplit

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command
from django.urls import reverse
from PIL import Image
from rest_framework.test import APIClient

from hidream_models.models import HiDreamTemplate, ModelImageTask, TemplateKind
from hidream_models.services.templates import sync_templates
from hidream_models.simulator import rendering
from tests import jobs
from tests.stub_server import StubServer, envelope

pytestmark = pytest.mark.integration

HUMAN_PATH = "/api-pub/ec/v3/template/model/human"
SCENE_PATH = "/api-pub/ec/v3/template/model/scene"
SYNC_URL = "admin:hidream_models_hidreamtemplate_sync"
TEMPLATES_CHANGELIST = "admin:hidream_models_hidreamtemplate_changelist"
EXPECTED = {
    TemplateKind.HUMAN: {item["id"]: item for item in rendering.HUMAN_TEMPLATES},
    TemplateKind.SCENE: {item["id"]: item for item in rendering.SCENE_TEMPLATES},
}


# -- helpers ---------------------------------------------------------------------------------


def make_staff(username, perms=()):
    user = get_user_model().objects.create_user(username, password="pw", is_staff=True)
    for name in perms:
        app_label, codename = name.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    return user


def png_bytes(size=(48, 64), color=(90, 140, 200)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "PNG")
    return out.getvalue()


def page_reply(templates, total_page=1):
    """A 200 reply of a template-list endpoint, in HiDream's envelope."""
    result = {"templates": templates, "total_count": len(templates), "total_page": total_page}
    return (200, {"Content-Type": "application/json"}, envelope(result), 0)


def stored_name(url: str) -> str:
    """The storage name behind an absolute or relative media URL."""
    path = urlsplit(url).path
    assert path.startswith(django_settings.MEDIA_URL), url
    return path.removeprefix(django_settings.MEDIA_URL)


def assert_real_picture(name: str) -> tuple[int, int]:
    assert name, "no preview stored"
    assert default_storage.exists(name), name
    with default_storage.open(name, "rb") as fh, Image.open(fh) as picture:
        picture.load()
        assert picture.width > 0 and picture.height > 0
        return picture.size


def simulator_pages(caplog) -> dict[str, list[tuple[int, int]]]:
    """(page_index, page_size) of every template-list request the simulator logged."""
    pages: dict[str, list[tuple[int, int]]] = {HUMAN_PATH: [], SCENE_PATH: []}
    for record in caplog.records:
        if record.name != "hidream_models.simulator":
            continue
        match = re.search(r"GET (\S+) HTTP", record.getMessage())
        if not match:
            continue
        url = urlsplit(match.group(1))
        if url.path in pages:
            query = parse_qs(url.query)
            pages[url.path].append((int(query["page_index"][0]), int(query["page_size"][0])))
    return pages


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- the service against the simulator -------------------------------------------------------


@pytest.mark.django_db
def test_sync_follows_every_page_and_stores_all_fields_and_previews(simulator, monkeypatch, caplog):
    monkeypatch.setattr("hidream_models.client.TEMPLATE_PAGE_SIZE", 4)
    caplog.set_level(logging.DEBUG, logger="hidream_models.simulator")

    report = sync_templates()

    assert (report.created, report.updated, report.deactivated) == (12, 0, 0), report
    assert report.previews == 12 and report.preview_errors == [], report
    # 6 templates of each kind at 4 a page: pages 1 and 2 of each list, and no third.
    pages = simulator_pages(caplog)
    assert sorted(pages[HUMAN_PATH]) == [(1, 4), (2, 4)], pages
    assert sorted(pages[SCENE_PATH]) == [(1, 4), (2, 4)], pages

    for kind, expected in EXPECTED.items():
        rows = {t.remote_id: t for t in HiDreamTemplate.objects.filter(kind=kind)}
        assert sorted(rows) == sorted(expected), kind
        for remote_id, item in expected.items():
            template = rows[remote_id]
            assert template.name_zh == item["name_zh"] and template.name_zh
            assert template.name_en == item["name_en"] and template.name_en
            assert template.gender == item.get("gender", "")
            assert template.scenes_type == item.get("scenes_type", "")
            assert template.region == item.get("region", "")
            assert template.is_active
            assert template.synced_at is not None
            assert template.remote_preview_url == simulator.preview_url(remote_id)
            # ``extra`` keeps every field HiDream sent, as sent.
            assert template.extra == {**item, "show_image": simulator.preview_url(remote_id)}
            assert template.preview.name == f"hidream/templates/{kind}-{remote_id}.png"
            assert_real_picture(template.preview.name)
    human = HiDreamTemplate.objects.get(kind=TemplateKind.HUMAN, remote_id="h-001")
    assert human.gender in ("Woman", "Man") and not human.scenes_type
    scene = HiDreamTemplate.objects.get(kind=TemplateKind.SCENE, remote_id="s-003")
    assert scene.scenes_type == "outdoor scenes" and scene.region == "Southeast Asia"
    assert not scene.gender


@pytest.mark.django_db
def test_a_second_sync_updates_the_same_rows(simulator):
    first = sync_templates()
    assert first.created == 12
    before = {(t.kind, t.remote_id): (t.pk, t.synced_at) for t in HiDreamTemplate.objects.all()}
    HiDreamTemplate.objects.filter(remote_id="h-002").update(name_en="stale", gender="")

    second = sync_templates()

    assert (second.created, second.updated, second.deactivated) == (0, 12, 0), second
    assert HiDreamTemplate.objects.count() == 12
    after = {(t.kind, t.remote_id): (t.pk, t.synced_at) for t in HiDreamTemplate.objects.all()}
    assert set(after) == set(before)
    for key, (pk, synced_at) in after.items():
        assert pk == before[key][0], f"{key} was re-created"
        assert synced_at >= before[key][1]
    refreshed = HiDreamTemplate.objects.get(kind=TemplateKind.HUMAN, remote_id="h-002")
    assert refreshed.name_en == EXPECTED[TemplateKind.HUMAN]["h-002"]["name_en"]
    assert refreshed.gender == EXPECTED[TemplateKind.HUMAN]["h-002"]["gender"]
    # The preview is replaced in place, not piled up under new names.
    previews = default_storage.listdir("hidream/templates")[1]
    assert len(previews) == 12, previews
    assert_real_picture(refreshed.preview.name)


# -- catalogues the simulator cannot produce (StubServer) ------------------------------------


@pytest.mark.django_db
def test_a_template_that_disappears_is_deactivated_never_deleted(simulator, settings):
    assert sync_templates().created == 12
    task = ModelImageTask.objects.create(
        mode="template", human_template_id="h-006", scene_template_id="s-006", image_count=1
    )
    h006 = HiDreamTemplate.objects.get(kind=TemplateKind.HUMAN, remote_id="h-006")
    humans = [dict(item) for item in rendering.HUMAN_TEMPLATES if item["id"] != "h-006"]
    scenes = [dict(item) for item in rendering.SCENE_TEMPLATES if item["id"] != "s-006"]

    with StubServer([page_reply(humans), page_reply(scenes)]) as stub:
        settings.HIDREAM_BASE_URL = stub.url
        report = sync_templates(with_previews=False)

    assert [(method, urlsplit(path).path) for method, path, _h, _b in stub.requests] == [
        ("GET", HUMAN_PATH),
        ("GET", SCENE_PATH),
    ]
    assert report.deactivated == 2 and report.created == 0 and report.updated == 10, report
    assert HiDreamTemplate.objects.count() == 12, "a template was deleted"
    gone = HiDreamTemplate.objects.filter(remote_id__in=["h-006", "s-006"])
    assert [t.is_active for t in gone] == [False, False]
    kept = HiDreamTemplate.objects.get(pk=h006.pk)
    assert kept.name_en == h006.name_en and kept.preview.name == h006.preview.name
    assert HiDreamTemplate.objects.filter(is_active=True).count() == 10
    task.refresh_from_db()
    assert (task.human_template_id, task.scene_template_id) == ("h-006", "s-006")
    assert HiDreamTemplate.objects.get(kind=TemplateKind.HUMAN, remote_id=task.human_template_id)

    # It comes back at a later sync: active again, the same row.
    settings.HIDREAM_BASE_URL = simulator.base_url
    again = sync_templates(with_previews=False)
    assert again.created == 0 and again.deactivated == 0
    assert HiDreamTemplate.objects.get(pk=h006.pk).is_active


@pytest.mark.django_db
def test_a_broken_preview_is_reported_and_the_sync_goes_on(settings):
    with StubServer([page_reply([])]) as stub:
        humans = [
            {"id": "h-ok", "name_en": "Fine", "name_zh": "好", "gender": "Woman",
             "show_image": f"{stub.url}/previews/h-ok.png"},
            {"id": "h-broken", "name_en": "Broken", "name_zh": "坏", "gender": "Man",
             "show_image": f"{stub.url}/previews/h-broken.png"},
        ]  # fmt: skip
        stub.replies = [
            page_reply(humans),
            page_reply([]),
            (200, {"Content-Type": "image/png"}, png_bytes(), 0),
            (404, {"Content-Type": "text/plain"}, b"no such preview", 0),
        ]
        settings.HIDREAM_BASE_URL = stub.url
        report = sync_templates()

    assert report.created == 2 and report.previews == 1, report
    assert len(report.preview_errors) == 1, report.preview_errors
    assert "h-broken" in report.preview_errors[0] and "404" in report.preview_errors[0]
    assert "1 previews failed" in str(report)
    ok = HiDreamTemplate.objects.get(remote_id="h-ok")
    broken = HiDreamTemplate.objects.get(remote_id="h-broken")
    assert assert_real_picture(ok.preview.name) == (48, 64)
    assert not broken.preview
    assert broken.is_active and broken.name_en == "Broken" and broken.synced_at is not None
    assert broken.remote_preview_url == f"{stub.url}/previews/h-broken.png"


# -- manage.py hidream_sync_templates --------------------------------------------------------


@pytest.mark.django_db
def test_command_prints_the_report(simulator):
    out, err = io.StringIO(), io.StringIO()
    call_command("hidream_sync_templates", stdout=out, stderr=err)
    assert "hidream_sync_templates: 12 new, 0 updated, 0 deactivated, 12 previews stored" in (
        out.getvalue()
    )
    assert HiDreamTemplate.objects.filter(is_active=True).count() == 12

    out = io.StringIO()
    call_command("hidream_sync_templates", "--kind", "scene", "--no-previews", stdout=out)
    assert "0 new, 6 updated, 0 deactivated, 0 previews stored" in out.getvalue()


@pytest.mark.django_db
def test_command_fails_with_command_error_when_hidream_is_unreachable(settings):
    settings.HIDREAM_BASE_URL = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(CommandError, match="Template sync failed"):
        call_command("hidream_sync_templates", stdout=io.StringIO(), stderr=io.StringIO())
    assert HiDreamTemplate.objects.count() == 0


# -- the admin button ------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_admin_sync_button_enqueues_the_sync_job(client, simulator, run_jobs):
    client.force_login(
        make_staff("maker", ["hidream_models.generate", "hidream_models.view_hidreamtemplate"])
    )
    changelist = client.get(reverse(TEMPLATES_CHANGELIST))
    assert changelist.status_code == 200
    html = changelist.content.decode()
    assert f'action="{reverse(SYNC_URL)}"' in html and "Sync from HiDream" in html

    response = client.post(reverse(SYNC_URL))

    assert response.status_code == 302
    assert response["Location"] == reverse(TEMPLATES_CHANGELIST)
    assert [job.task.name for job in jobs.pending_jobs()] == ["sync_templates_job"]
    assert HiDreamTemplate.objects.count() == 0, "the sync ran inside the request"
    assert run_jobs() == ["sync_templates_job"]
    assert HiDreamTemplate.objects.filter(is_active=True).count() == 12


@pytest.mark.django_db(transaction=True)
def test_admin_sync_button_needs_the_generate_permission(client):
    client.force_login(make_staff("viewer", ["hidream_models.view_hidreamtemplate"]))
    changelist = client.get(reverse(TEMPLATES_CHANGELIST))
    assert changelist.status_code == 200
    assert "Sync from HiDream" not in changelist.content.decode()
    assert client.post(reverse(SYNC_URL)).status_code == 403
    assert jobs.pending_jobs() == []


@pytest.mark.django_db(transaction=True)
def test_admin_sync_url_refuses_get(client):
    client.force_login(get_user_model().objects.create_superuser("boss", "b@example.com", "pw"))
    assert client.get(reverse(SYNC_URL)).status_code == 403
    assert jobs.pending_jobs() == []


# -- the API ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_api_filters_scenes_and_gives_absolute_preview_urls(simulator):
    assert sync_templates().created == 12
    api = APIClient()
    api.force_authenticate(get_user_model().objects.create_superuser("boss", "b@x.com", "pw"))

    response = api.get(
        "/api/hidream/templates/", {"kind": "scene", "scenes_type": "outdoor scenes"}
    )

    assert response.status_code == 200, response.content
    results = response.json()["results"]
    assert [item["remote_id"] for item in results] == ["s-002", "s-003", "s-005"]
    for item in results:
        assert item["kind"] == "scene" and item["scenes_type"] == "outdoor scenes"
        assert item["preview_url"].startswith(f"http://testserver{django_settings.MEDIA_URL}")
        template = HiDreamTemplate.objects.get(kind="scene", remote_id=item["remote_id"])
        assert stored_name(item["preview_url"]) == template.preview.name
        assert_real_picture(template.preview.name)
