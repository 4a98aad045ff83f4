"""The OpenAPI schema (valid, app-only, complete) and the Swagger UI page (no CDN)."""

from __future__ import annotations

import json
import re

import pytest
from django.contrib.staticfiles import finders
from django.core.management import call_command

from tests.api.helpers import DOCS, SCHEMA

pytestmark = pytest.mark.django_db

EXPECTED_OPERATIONS = {
    ("get", "/api/hidream/tasks/"),
    ("post", "/api/hidream/tasks/"),
    ("get", "/api/hidream/tasks/{id}/"),
    ("post", "/api/hidream/tasks/{id}/refresh/"),
    ("post", "/api/hidream/tasks/{id}/retry/"),
    ("post", "/api/hidream/tasks/bulk/"),
    ("get", "/api/hidream/images/"),
    ("get", "/api/hidream/images/{id}/"),
    ("post", "/api/hidream/images/{id}/approve/"),
    ("post", "/api/hidream/images/{id}/reject/"),
    ("get", "/api/hidream/templates/"),
    ("get", "/api/hidream/templates/{id}/"),
}
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


def test_spectacular_validates_without_warnings(tmp_path):
    out = tmp_path / "schema.yaml"
    call_command(
        "spectacular",
        "--validate",
        "--fail-on-warn",
        "--urlconf",
        "hidream_models.api.urls",
        "--file",
        str(out),
    )
    text = out.read_text()
    assert text.startswith("openapi: 3.")
    for path in ("/tasks/", "/tasks/bulk/", "/images/{id}/approve/", "/templates/"):
        assert f"{path}:" in text


@pytest.fixture
def schema(api):
    response = api.get(SCHEMA, HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/vnd.oai.openapi+json")
    return json.loads(response.content)


def test_schema_is_openapi_3_of_this_app_only(schema):
    assert schema["openapi"].startswith("3.")
    assert schema["info"]["title"] == "hidream-models API"
    assert schema["paths"], "no paths"
    for path in schema["paths"]:
        assert path.startswith("/api/hidream/"), path
        assert "/admin/" not in path and "/callback/" not in path


def test_schema_has_every_endpoint(schema):
    operations = {
        (method, path)
        for path, item in schema["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }
    missing = EXPECTED_OPERATIONS - operations
    assert not missing, f"not in the schema: {sorted(missing)}"


def test_schema_documents_filters_auth_and_idempotency(schema):
    def parameters(method, path):
        return {p["name"] for p in schema["paths"][path][method].get("parameters", [])}

    assert {
        "status",
        "product",
        "created_by",
        "created_after",
        "created_before",
        "batch",
        "page",
        "page_size",
        "ordering",
    } <= parameters("get", "/api/hidream/tasks/")
    assert {"task", "product", "status", "review_state"} <= parameters(
        "get", "/api/hidream/images/"
    )
    assert {"kind", "gender", "scenes_type"} <= parameters("get", "/api/hidream/templates/")
    assert "Idempotency-Key" in parameters("post", "/api/hidream/tasks/")
    create = schema["paths"]["/api/hidream/tasks/"]["post"]
    assert {"application/json", "multipart/form-data"} <= set(create["requestBody"]["content"])
    schemes = schema["components"]["securitySchemes"]
    assert (
        schemes["tokenAuth"]["in"] == "header" and schemes["tokenAuth"]["name"] == "Authorization"
    )
    assert "cookieAuth" in schemes


def test_schema_never_mentions_the_callback_token(schema):
    assert "callback_token" not in json.dumps(schema)


def test_schema_follows_the_mount_point(schema):
    # The schema view derives its prefix from where the shop included the URLs.
    assert all(path.startswith("/api/hidream/") for path in schema["paths"])
    assert "/api/hidream/schema/" not in schema["paths"]
    assert "/api/hidream/docs/" not in schema["paths"]


def test_docs_page_loads_only_local_assets(api):
    response = api.get(DOCS)
    assert response.status_code == 200
    html = response.content.decode()
    assert "SwaggerUIBundle" in html
    assert "/api/hidream/schema/" in html
    assert "cdn" not in html.lower()
    sources = re.findall(r"""<(?:script|link|img)\b[^>]*?\b(?:src|href)\s*=\s*["']([^"']+)""", html)
    assert sources, "no script or link tags found"
    for source in sources:
        assert not re.match(r"^(https?:)?//", source), f"remote asset: {source}"
        assert source.startswith("/static/"), source
    assert not re.search(r"""(src|href)\s*=\s*["']https?://""", html)
    scripts = [s for s in sources if s.endswith(".js")]
    assert {s.rsplit("/", 1)[-1] for s in scripts} >= {
        "swagger-ui-bundle.js",
        "swagger-ui-standalone-preset.js",
    }
    for source in sources:
        relative = source.removeprefix("/static/")
        assert finders.find(relative), f"{source} is not served by the shop's static files"
