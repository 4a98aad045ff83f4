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
    served = assert_served_as_image(client, name, "image/png")
    assert SCRIPT not in served  # the text chunk is metadata: taken out
    assert Image.open(io.BytesIO(served)).size == (40, 30)


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
    served = assert_served_as_image(client, name, "image/webp")
    assert Image.open(io.BytesIO(served)).format == "WEBP"


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
    admin_client,
    client,
    make_product,
    local_templates,  # noqa: F811
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
    admin_client,
    make_product,
    local_templates,  # noqa: F811
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


MEASURE_VERIFY = """
import resource, sys
import django
django.setup()
from hidream_models.files import verify_upload
from hidream_models import images_vips
assert images_vips.available()
with open(sys.argv[1], "rb") as fh:
    data = fh.read()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
checked = verify_upload(data, "The image").checked
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(checked.format, checked.width, (after - before) // 1024)
"""


@pytest.mark.skipif(
    not __import__("hidream_models.images_vips").images_vips.available(),
    reason="the bounded-memory decode is libvips's (the vips extra)",
)
@pytest.mark.parametrize("fmt", ["WEBP", "PNG"])
def test_checking_a_tiny_upload_of_a_huge_picture_takes_little_memory(tmp_path, fmt):
    """A 3 KB lossless WebP of 8000×8000 pixels decodes to 256 MB (Pillow holds twice
    that): the whole-file check streams it instead, in a process of its own to measure."""
    import subprocess
    import sys

    path = tmp_path / f"huge.{fmt.lower()}"
    Image.new("RGB", (8000, 8000), (10, 20, 30)).save(path, fmt, lossless=True)
    assert path.stat().st_size < 1_000_000
    result = subprocess.run(
        [sys.executable, "-c", MEASURE_VERIFY, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**__import__("os").environ, "DJANGO_SETTINGS_MODULE": "tests.settings"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    checked_format, width, grew_mb = result.stdout.split()
    assert (checked_format, width) == (fmt, "8000")
    assert int(grew_mb) < 100, f"checking grew the process by {grew_mb} MB"


def photo_with_gps_and_a_trailing_page() -> bytes:
    """A JPEG with EXIF GPS, a comment holding SVG, and an HTML page after its last byte."""
    exif = Image.Exif()
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2] = "N", (48.0, 51.0, 29.0)
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(
        out, "JPEG", exif=exif, comment=b"<svg onload=alert(1)>"
    )
    return out.getvalue() + SCRIPT


def test_uploads_are_stored_without_metadata_or_trailing_bytes(api):
    data = photo_with_gps_and_a_trailing_page()
    assert Image.open(io.BytesIO(data)).getexif().get_ifd(0x8825)
    upload = SimpleUploadedFile("photo.jpg", data, content_type="image/jpeg")
    response = api.post("/api/hidream/tasks/", {"image": upload, **PROMPT}, format="multipart")
    assert response.status_code == 201, response.content
    with default_storage.open(ModelImageTask.objects.get().source_image.name, "rb") as fh:
        stored = fh.read()
    assert SCRIPT not in stored and b"<svg" not in stored
    picture = Image.open(io.BytesIO(stored))
    assert not picture.getexif() and "comment" not in picture.info
    assert picture.tobytes() == Image.open(io.BytesIO(data)).tobytes()  # the same pixels


def stored_files() -> list[str]:
    found = []
    for folder in ("hidream/masks", "hidream/sources"):
        if default_storage.exists(folder):
            found += default_storage.listdir(folder)[1]
    return found


def test_a_refused_request_stores_no_file(db, make_product):
    """The product check (403) and the product's missing photo (400) come before any file
    is stored: no mask is left behind without a task."""
    refused = token_client(make_user("no-products", ("hidream_models.generate",)))
    mask = base64.b64encode(polyglot_png()).decode()
    product = make_product()
    response = refused.post(
        "/api/hidream/tasks/",
        {"product": f"catalog.product:{product.pk}", "mask": mask, **PROMPT},
        format="json",
    )
    assert response.status_code == 403
    allowed = token_client(make_user("boss2", superuser=True))
    photo_less = make_product(with_image=False)
    response = allowed.post(
        "/api/hidream/tasks/",
        {"product": f"catalog.product:{photo_less.pk}", "mask": mask, **PROMPT},
        format="json",
    )
    assert response.status_code == 400
    assert stored_files() == [] and not ModelImageTask.objects.exists()


def test_files_of_a_task_that_could_not_be_made_are_deleted(api, monkeypatch):
    from hidream_models import services

    def broken(*args, **kwargs):
        raise RuntimeError("database gone")

    monkeypatch.setattr(services, "create_task_for_image", broken)
    image = SimpleUploadedFile("shirt.jpg", make_image_bytes(size=(40, 30)), "image/jpeg")
    mask = SimpleUploadedFile("mask.png", polyglot_png(), "image/png")
    api.raise_request_exception = False
    response = api.post(
        "/api/hidream/tasks/", {"image": image, "mask": mask, **PROMPT}, format="multipart"
    )
    assert response.status_code == 500
    assert stored_files() == []


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_an_upload_turned_by_exif_is_stored_upright(api, fmt):
    """Its orientation is EXIF, which is taken out: the stored picture is turned instead, so
    what HiDream gets (and a mask drawn on the upright picture) still lines up."""
    exif = Image.Exif()
    exif[0x0112] = 6  # turn 90° clockwise to show
    picture = Image.new("RGB", (80, 40), (250, 250, 250))
    picture.paste((200, 0, 0), (0, 0, 10, 40))  # a red band on the left as stored
    out = io.BytesIO()
    picture.save(out, fmt, exif=exif)
    upload = SimpleUploadedFile(f"phone.{fmt.lower()}", out.getvalue(), f"image/{fmt.lower()}")
    response = api.post("/api/hidream/tasks/", {"image": upload, **PROMPT}, format="multipart")
    assert response.status_code == 201, response.content
    with default_storage.open(ModelImageTask.objects.get().source_image.name, "rb") as fh:
        stored = Image.open(io.BytesIO(fh.read()))
        stored.load()
    assert stored.size == (40, 80)  # upright: turned a quarter
    assert not stored.getexif().get(0x0112)
    red, green, _blue = stored.convert("RGB").getpixel((20, 3))  # the band is now on top
    assert red > 150 and green < 80


def test_an_interlaced_png_of_many_pixels_is_refused_before_decoding(api, tmp_path):
    pyvips = pytest.importorskip("pyvips", reason="libvips writes interlaced PNGs; Pillow cannot")
    path = tmp_path / "interlaced.png"
    pyvips.Image.black(4200, 4200).pngsave(str(path), interlace=True)
    upload = SimpleUploadedFile("big.png", path.read_bytes(), "image/png")
    response = api.post("/api/hidream/tasks/", {"image": upload, **PROMPT}, format="multipart")
    assert response.status_code == 400
    assert "interlaced PNG" in str(response.json()["image"])


def test_a_file_libvips_refuses_is_not_handed_to_pillow_to_decode_whole():
    """Pillow would hold the whole bitmap: with libvips there, its refusal stands."""
    from hidream_models import images_vips

    if not images_vips.available():
        pytest.skip("libvips (the vips extra) decides only where it is installed")
    out = io.BytesIO()
    Image.new("RGB", (300, 300), (1, 2, 3)).save(out, "PNG")
    data = bytearray(out.getvalue())
    idat = data.index(b"IDAT")
    data[idat + 20] ^= 0xFF  # damage the compressed pixel data
    with pytest.raises(images_vips.pyvips.Error):
        images_vips.decode_whole(io.BytesIO(bytes(data)), "PNG")
