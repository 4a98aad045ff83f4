"""No upload can become a document on the shop's origin (issue 13, point 1).

A PNG whose text chunk holds ``<script>``, uploaded as ``pwn.html``, must be stored under a
name the app makes with the extension of the format that decoded, and served as that image
type (with ``nosniff``), through every entry point: the API's image (file and base64), the
API's mask (file and base64) and the admin's mask. And a file is only stored once it has
decoded whole.
"""

from __future__ import annotations

import base64
import io
import re

import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import re_path
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from hidream_models.models import ModelImageTask
from shop_demo import urls as demo_urls
from tests.api.helpers import make_user, token_client
from tests.conftest import make_image_bytes
from tests.test_admin import confirm, form_data, local_templates  # noqa: F401 (a fixture)

# The demo's URLs with its DEBUG-only media route (pytest-django runs with DEBUG off).
urlpatterns = [*demo_urls.urlpatterns, re_path(r"^media/(?P<path>.*)$", demo_urls.serve_media)]
pytestmark = pytest.mark.urls(__name__)

SCRIPT = b"<html><script>fetch('/admin/auth/user/add/')</script></html>"
PROMPT = {"prompt": "a model on a beach", "image_count": "1"}


def polyglot_png() -> bytes:
    """A real PNG that is also an HTML page to a browser that sniffs or trusts the name."""
    info = PngInfo()
    info.add_text("Comment", SCRIPT.decode())
    out = io.BytesIO()
    Image.new("RGB", (40, 30), (10, 120, 200)).save(out, "PNG", pnginfo=info)
    data = out.getvalue()
    assert SCRIPT in data
    return data


def stored_as(name: str, folder: str, extension: str) -> None:
    assert re.fullmatch(rf"hidream/{folder}/[0-9a-f]{{32}}\.{extension}", name), name
    assert "pwn" not in name and "html" not in name


def assert_served_as_image(client, name: str, content_type: str) -> bytes:
    """The demo serves media from /media/ (DEBUG); the type comes from the stored name."""
    response = client.get(f"/media/{name}")
    assert response.status_code == 200
    assert response["Content-Type"] == content_type
    assert response["X-Content-Type-Options"] == "nosniff"
    return b"".join(response.streaming_content)


@pytest.fixture
def api(db):
    return token_client(make_user("uploader", superuser=True))


def test_api_image_upload_named_html_is_stored_as_png(api, client):
    upload = SimpleUploadedFile("pwn.html", polyglot_png(), content_type="text/html")
    response = api.post("/api/hidream/tasks/", {"image": upload, **PROMPT}, format="multipart")
    assert response.status_code == 201, response.content
    name = ModelImageTask.objects.get().source_image.name
    stored_as(name, "sources", "png")
    assert SCRIPT in assert_served_as_image(client, name, "image/png")  # as a picture


def test_api_image_as_base64_is_stored_as_its_decoded_format(api, client):
    data = make_image_bytes(size=(40, 30), fmt="WEBP")
    response = api.post(
        "/api/hidream/tasks/",
        {"image": "data:image/png;base64," + base64.b64encode(data).decode(), **PROMPT},
        format="json",
    )
    assert response.status_code == 201, response.content
    name = ModelImageTask.objects.get().source_image.name
    stored_as(name, "sources", "webp")
    assert assert_served_as_image(client, name, "image/webp") == data


@pytest.mark.parametrize("as_base64", [False, True])
def test_api_mask_named_html_is_stored_as_png(api, client, as_base64):
    image = SimpleUploadedFile("shirt.jpg", make_image_bytes(size=(40, 30)), "image/jpeg")
    if as_base64:
        mask = base64.b64encode(polyglot_png()).decode()
    else:
        mask = SimpleUploadedFile("pwn.html", polyglot_png(), content_type="text/html")
    response = api.post(
        "/api/hidream/tasks/", {"image": image, "mask": mask, **PROMPT}, format="multipart"
    )
    assert response.status_code == 201, response.content
    task = ModelImageTask.objects.get()
    stored_as(task.source_image.name, "sources", "jpg")
    stored_as(task.mask.name, "masks", "png")
    assert_served_as_image(client, task.mask.name, "image/png")


@pytest.mark.django_db
def test_admin_mask_named_html_is_stored_as_png(
    admin_client, client, make_product, local_templates  # noqa: F811
):
    human, scene = local_templates
    product = make_product()
    data = form_data([product.pk], human=human, scene=scene)
    data["mask"] = SimpleUploadedFile("pwn.html", polyglot_png(), content_type="text/html")
    response = confirm(admin_client, data)
    assert response.status_code == 302
    name = ModelImageTask.objects.get().mask.name
    stored_as(name, "masks", "png")
    assert_served_as_image(client, name, "image/png")


def truncated_jpeg() -> bytes:
    """A JPEG whose header is fine and whose picture data stops half-way."""
    data = make_image_bytes(size=(400, 300))
    return data[: len(data) // 2]


def test_api_refuses_an_image_that_does_not_decode_whole(api):
    upload = SimpleUploadedFile("half.jpg", truncated_jpeg(), content_type="image/jpeg")
    response = api.post("/api/hidream/tasks/", {"image": upload, **PROMPT}, format="multipart")
    assert response.status_code == 400
    assert "damaged" in str(response.json()["image"])
    assert not ModelImageTask.objects.exists()
    assert not default_storage.exists("hidream/sources")


@pytest.mark.django_db
def test_admin_refuses_a_mask_that_does_not_decode_whole(
    admin_client, make_product, local_templates  # noqa: F811
):
    human, scene = local_templates
    data = form_data([make_product().pk], human=human, scene=scene)
    data["mask"] = SimpleUploadedFile("mask.jpg", truncated_jpeg(), content_type="image/jpeg")
    response = confirm(admin_client, data)
    assert response.status_code == 200
    assert "damaged" in str(response.context["form"].errors["mask"])
    assert not ModelImageTask.objects.exists()


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "TIFF"])
def test_api_refuses_formats_other_than_jpeg_png_and_webp(api, fmt):
    out = io.BytesIO()
    Image.new("RGB", (20, 20), (200, 0, 0)).save(out, fmt)
    upload = SimpleUploadedFile("photo.png", out.getvalue(), content_type="image/png")
    response = api.post("/api/hidream/tasks/", {"image": upload, **PROMPT}, format="multipart")
    assert response.status_code == 400
    assert "JPEG, PNG or WebP" in str(response.json()["image"])
