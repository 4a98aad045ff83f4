"""Preparing a product photo for HiDream (``prepare_source``) and checking results
(``verify_image``), with real pictures made by Pillow and files in the temp MEDIA_ROOT."""

from __future__ import annotations

import base64
import hashlib
import io

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from PIL import Image

from hidream_models.images import (
    MAX_SIDE,
    CheckedImage,
    ImageProblem,
    PreparedSource,
    prepare_source,
    verify_image,
)
from tests.conftest import make_image_bytes

ORIENTATION = 0x0112


def store(name, data) -> str:
    return default_storage.save(name, ContentFile(data))


def decoded(prepared: PreparedSource) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(prepared.value, validate=True)))
    image.load()
    return image


def truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


# -- prepare_source, base64 mode ---------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_small_image_is_sent_byte_for_byte(fmt):
    # Written by Pillow with no metadata: there is nothing to take out (test_images_vips.py
    # has the photos with EXIF, XMP and comments, on both engines).
    data = make_image_bytes(size=(300, 400), fmt=fmt)
    name = store(f"products/small.{fmt.lower()}", data)
    prepared = prepare_source(name)
    assert prepared.mode == "base64"
    assert base64.b64decode(prepared.value, validate=True) == data
    assert prepared.sha256 == hashlib.sha256(data).hexdigest()
    assert (prepared.width, prepared.height) == (300, 400)
    assert prepared.reference == name


def test_exif_orientation_6_is_applied():
    data = make_image_bytes(size=(600, 400), exif_orientation=6)
    with Image.open(io.BytesIO(data)) as original:
        assert original.size == (600, 400)
        assert original.getexif().get(ORIENTATION) == 6
    prepared = prepare_source(store("products/rotated.jpg", data))
    image = decoded(prepared)
    assert image.size == (400, 600)
    assert (prepared.width, prepared.height) == (400, 600)
    assert image.getexif().get(ORIENTATION, 1) == 1  # not rotated twice by a viewer
    assert prepared.sha256 == hashlib.sha256(base64.b64decode(prepared.value)).hexdigest()


def test_exif_rotation_turns_the_content_not_only_the_size():
    # A red left half; orientation 6 means "rotate 90° clockwise to display": red ends on top.
    image = Image.new("RGB", (200, 100), (255, 255, 255))
    image.paste((255, 0, 0), (0, 0, 100, 100))
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif, quality=95)
    result = decoded(prepare_source(store("products/half.jpg", out.getvalue())))
    assert result.size == (100, 200)
    top = result.getpixel((50, 20))
    bottom = result.getpixel((50, 180))
    assert top[0] > 200 and top[1] < 60  # red
    assert min(bottom) > 200  # white


def test_alpha_png_stays_png_with_alpha_when_reencoded():
    image = Image.new("RGBA", (60, 30), (10, 200, 10, 100))
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    out = io.BytesIO()
    image.save(out, "PNG", exif=exif)
    result = decoded(prepare_source(store("products/alpha.png", out.getvalue())))
    assert result.format == "PNG"
    assert result.mode == "RGBA"
    assert result.size == (30, 60)
    assert result.getpixel((5, 5))[3] == 100


def test_large_image_is_shrunk_to_4096_on_the_long_side():
    data = make_image_bytes(size=(5000, 3000))
    prepared = prepare_source(store("products/huge.jpg", data))
    image = decoded(prepared)
    assert MAX_SIDE == 4096
    # JPEGs are decoded at the largest DCT scale that fits (here 1/2): within 4K, never tiny.
    assert 2048 <= image.size[0] <= 4096
    assert abs(image.size[1] - 3000 * image.size[0] / 5000) <= 1
    assert (prepared.width, prepared.height) == image.size
    assert image.format == "JPEG"


def test_tall_large_image_is_shrunk_on_its_height():
    data = make_image_bytes(size=(1000, 4500), fmt="PNG")
    image = decoded(prepare_source(store("products/tall.png", data)))
    assert image.size[1] == 4096
    assert abs(image.size[0] - 1000 * 4096 / 4500) <= 1


def test_small_image_is_never_enlarged():
    data = make_image_bytes(size=(100, 80))
    prepared = prepare_source(store("products/tiny.jpg", data))
    assert decoded(prepared).size == (100, 80)
    assert (prepared.width, prepared.height) == (100, 80)


# -- prepare_source refusals -----------------------------------------------------------------


def test_missing_file_is_an_image_problem():
    with pytest.raises(ImageProblem) as info:
        prepare_source("products/not-there.jpg")
    assert "products/not-there.jpg" in str(info.value)
    assert "missing" in str(info.value)


def test_empty_name_is_an_image_problem():
    with pytest.raises(ImageProblem, match="no image"):
        prepare_source("")


@pytest.mark.parametrize(
    "data", [b"this is a text file, not a picture\n", b"", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"]
)
def test_non_image_bytes_are_an_image_problem(data):
    name = store("products/notes.jpg", data)
    with pytest.raises(ImageProblem) as info:
        prepare_source(name)
    assert name in str(info.value)
    assert "not an image" in str(info.value)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_image_is_an_image_problem(fmt):
    name = store(f"products/cut.{fmt.lower()}", truncated(make_image_bytes(fmt=fmt)))
    with pytest.raises(ImageProblem) as info:
        prepare_source(name)
    assert "damaged" in str(info.value)
    assert name in str(info.value)


def test_pixel_cap_refuses_a_big_image(settings):
    settings.HIDREAM_MAX_IMAGE_PIXELS = 600 * 800 - 1
    name = store("products/capped.jpg", make_image_bytes(size=(600, 800)))
    with pytest.raises(ImageProblem) as info:
        prepare_source(name)
    text = str(info.value)
    assert "HIDREAM_MAX_IMAGE_PIXELS" in text
    assert "600" in text and "800" in text


def test_pixel_cap_at_exactly_the_size_is_accepted(settings):
    settings.HIDREAM_MAX_IMAGE_PIXELS = 600 * 800
    name = store("products/exact.jpg", make_image_bytes(size=(600, 800)))
    assert prepare_source(name).width == 600


def test_pixel_cap_refuses_before_decoding(settings):
    # Only the header is present: decoding would fail as "damaged", so a pixel-cap
    # message proves the refusal came from the header alone.
    header_only = make_image_bytes(size=(600, 800), fmt="PNG")[:64]
    name = store("products/header.png", header_only)
    with pytest.raises(ImageProblem, match="damaged"):
        prepare_source(name)
    settings.HIDREAM_MAX_IMAGE_PIXELS = 1000
    with pytest.raises(ImageProblem) as info:
        prepare_source(name)
    assert "HIDREAM_MAX_IMAGE_PIXELS" in str(info.value)
    assert "damaged" not in str(info.value)


# -- prepare_source, url mode ------------------------------------------------------------------


def test_url_mode_with_relative_media_url_is_refused(settings):
    settings.HIDREAM_SOURCE_IMAGE_MODE = "url"
    settings.MEDIA_URL = "/media/"
    name = store("products/rel.jpg", make_image_bytes(size=(50, 50)))
    with pytest.raises(ImageProblem) as info:
        prepare_source(name)
    text = str(info.value)
    assert "/media/products/rel.jpg" in text
    assert "absolute" in text and "base64" in text


def test_url_mode_with_absolute_media_url_returns_the_url(settings):
    settings.HIDREAM_SOURCE_IMAGE_MODE = "url"
    settings.MEDIA_URL = "https://cdn.example.com/media/"
    data = make_image_bytes(size=(5000, 3000))  # not shrunk: HiDream fetches the file itself
    name = store("products/abs.jpg", data)
    prepared = prepare_source(name)
    assert prepared.mode == "url"
    assert prepared.value == f"https://cdn.example.com/media/{name}"
    assert prepared.sha256 == hashlib.sha256(data).hexdigest()
    assert (prepared.width, prepared.height) == (5000, 3000)
    assert prepared.reference == name


def test_url_mode_still_refuses_a_broken_file(settings):
    settings.HIDREAM_SOURCE_IMAGE_MODE = "url"
    settings.MEDIA_URL = "https://cdn.example.com/media/"
    name = store("products/broken.jpg", b"not an image")
    with pytest.raises(ImageProblem):
        prepare_source(name)


# -- verify_image ----------------------------------------------------------------------------


@pytest.mark.parametrize(("fmt", "ext"), [("JPEG", "jpg"), ("PNG", "png"), ("WEBP", "webp")])
def test_verify_image_describes_a_good_picture(fmt, ext):
    data = make_image_bytes(size=(123, 77), fmt=fmt)
    assert verify_image(io.BytesIO(data), "The result") == CheckedImage(fmt, ext, 123, 77)


def test_verify_image_refuses_a_gif():
    data = make_image_bytes(size=(40, 40), fmt="GIF")
    with pytest.raises(ImageProblem) as info:
        verify_image(io.BytesIO(data), "The result picture")
    text = str(info.value)
    assert "GIF" in text
    assert "The result picture" in text


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_verify_image_refuses_a_truncated_file(fmt):
    data = truncated(make_image_bytes(size=(300, 300), fmt=fmt))
    with pytest.raises(ImageProblem, match="damaged"):
        verify_image(io.BytesIO(data), "The result")


def test_verify_image_refuses_non_image_and_oversized(settings):
    with pytest.raises(ImageProblem, match="not an image"):
        verify_image(io.BytesIO(b"<html>error</html>"), "The result")
    settings.HIDREAM_MAX_IMAGE_PIXELS = 100
    with pytest.raises(ImageProblem, match="HIDREAM_MAX_IMAGE_PIXELS"):
        verify_image(io.BytesIO(make_image_bytes(size=(20, 20))), "The result")
