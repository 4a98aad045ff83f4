"""``templates/``: the catalogue synced from the simulator, its filters and its previews."""

from __future__ import annotations

import pytest
from django.core.files.storage import default_storage

from hidream_models.models import HiDreamTemplate
from hidream_models.services.templates import sync_templates
from tests.api.helpers import TEMPLATES, body

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


@pytest.fixture
def synced(simulator):
    report = sync_templates()
    assert report.created == 12 and not report.preview_errors, report
    return report


def remote_ids(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [item["remote_id"] for item in body(response)["results"]]


def test_all_templates_kind_then_id(api, synced):
    assert remote_ids(api.get(TEMPLATES)) == [f"h-00{n}" for n in range(1, 7)] + [
        f"s-00{n}" for n in range(1, 7)
    ]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"kind": "human"}, ["h-001", "h-002", "h-003", "h-004", "h-005", "h-006"]),
        ({"kind": "scene"}, ["s-001", "s-002", "s-003", "s-004", "s-005", "s-006"]),
        ({"kind": "human", "gender": "Woman"}, ["h-001", "h-003", "h-005"]),
        ({"kind": "human", "gender": "man"}, ["h-002", "h-004", "h-006"]),
        ({"kind": "scene", "scenes_type": "indoor scenes"}, ["s-001", "s-004", "s-006"]),
        ({"scenes_type": "OUTDOOR SCENES"}, ["s-002", "s-003", "s-005"]),
    ],
)
def test_filters(api, synced, params, expected):
    assert remote_ids(api.get(TEMPLATES, params)) == expected


def test_unknown_kind_is_a_field_error(api, synced):
    response = api.get(TEMPLATES, {"kind": "robot"})
    assert response.status_code == 400
    assert "kind" in body(response)


def test_inactive_templates_can_be_filtered_out(api, synced):
    HiDreamTemplate.objects.filter(remote_id="h-002").update(is_active=False)
    active = remote_ids(api.get(TEMPLATES, {"kind": "human", "is_active": "true"}))
    assert "h-002" not in active and len(active) == 5
    assert remote_ids(api.get(TEMPLATES, {"is_active": "false"})) == ["h-002"]


def test_template_fields_and_absolute_preview(api, synced):
    human = HiDreamTemplate.objects.get(kind="human", remote_id="h-001")
    response = api.get(f"{TEMPLATES}{human.pk}/")
    assert response.status_code == 200
    data = body(response)
    assert data["remote_id"] == "h-001"
    assert data["kind"] == "human"
    assert data["name"] == "Urban woman"
    assert (data["name_en"], data["name_zh"]) == ("Urban woman", "都市女性")
    assert data["gender"] == "Woman"
    assert data["is_active"] is True
    assert data["synced_at"]
    assert data["preview_url"] == f"http://testserver{human.preview.url}"
    assert data["preview_url"].startswith("http://testserver/media/hidream/templates/")
    assert default_storage.exists(human.preview.name)
    assert "remote_preview_url" not in data
    assert "127.0.0.1" not in response.content.decode()  # HiDream's (simulator's) URL hidden

    scene = body(api.get(TEMPLATES, {"kind": "scene", "scenes_type": "indoor scenes"}))
    first = scene["results"][0]
    assert (first["scenes_type"], first["region"]) == ("indoor scenes", "China")
    assert all(item["preview_url"].startswith("http://testserver/") for item in scene["results"])


def test_name_follows_the_language(api, synced):
    response = api.get(TEMPLATES, {"kind": "human"}, HTTP_ACCEPT_LANGUAGE="zh-hans")
    assert body(response)["results"][0]["name"] == "都市女性"


def test_unknown_template_is_404(api, synced):
    assert api.get(f"{TEMPLATES}999999/").status_code == 404
