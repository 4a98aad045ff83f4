"""``prepare_source`` on both of its engines: libvips (pyvips installed) and Pillow (the fallback).

Every behaviour test runs twice. With ``engine == "vips"`` the Pillow path is made to fail the
test if it is used at all, so a pass proves libvips did the work; with ``"pillow"`` pyvips is
hidden as if it were not installed. Pictures are real, made by Pillow, stored in the temp
MEDIA_ROOT.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import struct
import zlib

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from PIL import Image

from hidream_models import images, images_vips
from hidream_models.images import MAX_SIDE, ImageProblem, PreparedSource, prepare_source
from tests.conftest import make_image_bytes
from tests.unit.test_image_metadata import (
    GREY_PROFILE,
    P3_PROFILE,
    assert_no_metadata,
    jpeg_scan_data,
    photo,
    pixel_data,
    pixels,
    png_chunk,
)

ORIENTATION = 0x0112
ARTIST = 0x013B
needs_vips = pytest.mark.skipif(not images_vips.available(), reason="pyvips is not installed")


@pytest.fixture(params=["vips", "pillow"])
def engine(request, monkeypatch):
    if request.param == "vips":
        if not images_vips.available():
            pytest.skip("pyvips is not installed")

        def no_pillow(name, storage, what):
            raise AssertionError(f"Pillow prepared {name}, libvips should have")

        monkeypatch.setattr(images, "_prepare_with_pillow", no_pillow)
    else:
        monkeypatch.setattr(images_vips, "pyvips", None)
    return request.param


def store(name, data) -> str:
    return default_storage.save(name, ContentFile(data))


def sent_bytes(prepared: PreparedSource) -> bytes:
    return base64.b64decode(prepared.value, validate=True)


def decoded(prepared: PreparedSource) -> Image.Image:
    image = Image.open(io.BytesIO(sent_bytes(prepared)))
    image.load()
    return image


def jpeg(size, *, orientation=None, color=(200, 40, 60), **exif_tags) -> bytes:
    image = Image.new("RGB", size, (245, 245, 240))
    image.paste(color, (0, 0, size[0] // 2, size[1]))  # the left half coloured
    exif = Image.Exif()
    if orientation:
        exif[ORIENTATION] = orientation
    for tag, value in exif_tags.items():
        exif[int(tag.removeprefix("tag_"))] = value
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90, exif=exif)
    return out.getvalue()


# -- what is sent -------------------------------------------------------------------------------


def test_vips_is_the_engine_when_pyvips_is_installed(monkeypatch):
    if not images_vips.available():
        pytest.skip("pyvips is not installed")
    calls = []
    real = images_vips._prepare
    monkeypatch.setattr(images_vips, "_prepare", lambda *a: calls.append(a) or real(*a))
    prepare_source(store("products/big.jpg", jpeg((5000, 3000))))
    assert len(calls) == 1


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_small_upright_image_without_metadata_is_sent_byte_for_byte(engine, fmt):
    # Pillow writes these files with no metadata: there is nothing to take out of them.
    data = make_image_bytes(size=(300, 400), fmt=fmt)
    name = store(f"products/small.{fmt.lower()}", data)
    prepared = prepare_source(name)
    assert sent_bytes(prepared) == data
    assert prepared.mode == "base64"
    assert prepared.sha256 == hashlib.sha256(data).hexdigest()
    assert (prepared.width, prepared.height) == (300, 400)
    assert prepared.reference == name


def test_big_jpeg_is_shrunk_within_4096_keeping_its_aspect(engine):
    prepared = prepare_source(store("products/big.jpg", jpeg((6000, 4000))))
    image = decoded(prepared)
    assert image.format == "JPEG" and image.mode == "RGB"
    # Shrunk on load by the largest DCT scale that fits (1/2 here), as the Pillow path does.
    assert image.size == (3000, 2000)
    assert (prepared.width, prepared.height) == image.size
    assert prepared.sha256 == hashlib.sha256(sent_bytes(prepared)).hexdigest()
    assert image.getpixel((500, 1000))[0] > 180 and image.getpixel((2500, 1000))[1] > 200


def test_jpeg_still_too_big_at_one_eighth_is_resized_to_4096(engine):
    prepared = prepare_source(store("products/banner.jpg", jpeg((40000, 400))))
    image = decoded(prepared)
    assert image.size[0] == MAX_SIDE
    assert abs(image.size[1] - 400 * MAX_SIDE / 40000) <= 1
    assert (prepared.width, prepared.height) == image.size


def test_tall_png_is_resized_on_its_height(engine):
    data = make_image_bytes(size=(1000, 4500), fmt="PNG")
    image = decoded(prepare_source(store("products/tall.png", data)))
    assert image.format == "JPEG"  # no alpha: re-encoded as JPEG, as before
    assert image.size[1] == MAX_SIDE
    assert abs(image.size[0] - 1000 * MAX_SIDE / 4500) <= 1


def test_exif_rotated_jpeg_comes_out_upright(engine):
    # Orientation 6: "turn 90° clockwise to display": the coloured left half ends on top.
    prepared = prepare_source(store("products/turned.jpg", jpeg((600, 400), orientation=6)))
    image = decoded(prepared)
    assert image.size == (400, 600)
    assert (prepared.width, prepared.height) == (400, 600)
    assert image.getexif().get(ORIENTATION, 1) == 1  # not turned a second time by a viewer
    top, bottom = image.getpixel((200, 100)), image.getpixel((200, 500))
    assert top[0] > 180 and top[1] < 90  # red
    assert min(bottom) > 200  # white


def test_big_exif_rotated_jpeg_is_shrunk_and_upright(engine):
    prepared = prepare_source(store("products/big-turned.jpg", jpeg((5000, 3000), orientation=8)))
    image = decoded(prepared)
    # Orientation 8: "turn 90° anticlockwise": the coloured left half ends at the bottom.
    assert image.size == (1500, 2500)
    top, bottom = image.getpixel((750, 300)), image.getpixel((750, 2200))
    assert min(top) > 200
    assert bottom[0] > 180 and bottom[1] < 90


def test_re_encoded_jpeg_carries_no_metadata(engine):
    data = jpeg((600, 400), orientation=3, tag_315="Shop photographer")
    with Image.open(io.BytesIO(data)) as original:
        assert original.getexif()[ARTIST] == "Shop photographer"
    image = decoded(prepare_source(store("products/tagged.jpg", data)))
    assert ARTIST not in image.getexif()


def test_png_with_alpha_stays_png_with_its_alpha(engine):
    picture = Image.new("RGBA", (5000, 200), (10, 200, 10, 100))
    picture.paste((255, 0, 0, 0), (0, 0, 2500, 100))  # fully transparent red: must not bleed
    out = io.BytesIO()
    picture.save(out, "PNG")
    prepared = prepare_source(store("products/alpha.png", out.getvalue()))
    image = decoded(prepared)
    assert image.format == "PNG" and image.mode == "RGBA"
    assert image.size == (MAX_SIDE, round(200 * MAX_SIDE / 5000))
    assert image.getpixel((100, 20))[3] == 0
    red, green, blue, alpha = image.getpixel((100, 150))
    column = [image.getpixel((100, y)) for y in range(image.height)]
    assert not [pixel for pixel in column if pixel[3] > 0 and pixel[0] > 30]  # no red fringe
    assert alpha == 100 and abs(green - 200) <= 3 and max(red, blue) <= 13


def test_greyscale_png_is_sent_as_an_rgb_jpeg(engine):
    picture = Image.linear_gradient("L").resize((4500, 300))
    out = io.BytesIO()
    picture.save(out, "PNG")
    image = decoded(prepare_source(store("products/grey.png", out.getvalue())))
    assert image.format == "JPEG" and image.mode == "RGB"
    assert image.size[0] == MAX_SIDE


def test_a_format_libvips_is_not_given_goes_to_pillow(monkeypatch):
    if not images_vips.available():
        pytest.skip("pyvips is not installed")
    monkeypatch.setattr(images_vips, "_prepare", lambda *a: pytest.fail("libvips used"))
    data = make_image_bytes(size=(5000, 200), fmt="GIF")
    image = decoded(prepare_source(store("products/anim.gif", data)))
    assert image.format == "JPEG" and image.size[0] == MAX_SIDE


# -- no private metadata leaves the shop (issue 13) ----------------------------------------------

SMALL_PHOTOS = {
    "JPEG": {"fmt": "JPEG"},
    "PNG": {"fmt": "PNG"},
    "PNG-alpha": {"fmt": "PNG", "mode": "RGBA"},
    "WEBP": {"fmt": "WEBP"},
    "WEBP-lossless-alpha": {"fmt": "WEBP", "mode": "RGBA", "lossless": True},
}


@pytest.mark.parametrize("kind", SMALL_PHOTOS)
def test_small_upright_photo_loses_its_metadata_not_its_pixel_data(engine, kind):
    # EXIF with a GPS position, XMP, a comment or text chunks, and a wide-gamut profile.
    data = photo(size=(300, 400), **SMALL_PHOTOS[kind])
    name = store(f"products/small-{kind}.img", data)
    prepared = prepare_source(name)
    sent = sent_bytes(prepared)
    image = assert_no_metadata(sent)
    assert image.format == SMALL_PHOTOS[kind]["fmt"]
    assert image.info["icc_profile"] == P3_PROFILE
    # Not re-encoded: the same pixels, from the same compressed data (JPEG: the scans after
    # SOS; PNG: the IDAT chunks; WebP: the VP8/VP8L/ALPH chunks), byte for byte.
    assert pixels(sent) == pixels(data)
    assert pixel_data(sent) == pixel_data(data)
    if image.format == "JPEG":
        assert jpeg_scan_data(sent) == jpeg_scan_data(data)
    # Exactly the file Pillow writes for this picture with no metadata but the profile.
    assert sent == photo(size=(300, 400), metadata=False, **SMALL_PHOTOS[kind])
    assert prepared.sha256 == hashlib.sha256(sent).hexdigest()
    assert (prepared.width, prepared.height) == (300, 400)
    with default_storage.open(name, "rb") as stored:
        assert stored.read() == data  # the shop's own file is left as it was


@pytest.mark.parametrize(
    ("fmt", "mode", "sent_as"),
    [("JPEG", "RGB", "JPEG"), ("PNG", "RGBA", "PNG"), ("WEBP", "RGB", "JPEG")],
)
def test_turned_photo_is_sent_upright_without_metadata_with_its_profile(engine, fmt, mode, sent_as):
    data = photo(fmt, (600, 400), orientation=6, mode=mode)
    prepared = prepare_source(store(f"products/turned.{fmt.lower()}", data))
    sent = sent_bytes(prepared)
    image = assert_no_metadata(sent)  # no EXIF at all: no orientation left to apply again
    assert image.format == sent_as and image.size == (400, 600)
    assert (prepared.width, prepared.height) == (400, 600)
    assert image.info["icc_profile"] == P3_PROFILE
    rgb = decoded(prepared).convert("RGB")
    top, bottom = rgb.getpixel((200, 100)), rgb.getpixel((200, 500))
    assert top[0] > 150 and top[1] < 100  # the coloured left half, turned to the top
    assert min(bottom) > 180


@pytest.mark.parametrize(
    ("fmt", "size", "long_side"), [("JPEG", (5000, 3000), 2500), ("PNG", (4200, 600), MAX_SIDE)]
)
def test_big_photo_is_shrunk_without_metadata_with_its_profile(engine, fmt, size, long_side):
    data = photo(fmt, size)
    prepared = prepare_source(store(f"products/big.{fmt.lower()}", data))
    image = assert_no_metadata(sent_bytes(prepared))
    assert image.format == "JPEG"
    assert image.size[0] == long_side
    assert abs(image.size[1] - size[1] * long_side / size[0]) <= 1
    assert image.info["icc_profile"] == P3_PROFILE


def rgb16_png(size, *, orientation: int) -> bytes:
    """A 16-bit RGB PNG with the P3 profile and an EXIF orientation (Pillow cannot write one)."""
    width, height = size
    row = b"".join(struct.pack(">3H", 50_000, 10_000 + x * 100, 20_000) for x in range(width))
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0))
        + png_chunk(b"iCCP", b"P3\0\0" + zlib.compress(P3_PROFILE))
        + png_chunk(b"eXIf", exif.tobytes()[6:])  # without the "Exif\0\0" of JPEG's APP1
        + png_chunk(b"IDAT", zlib.compress((b"\0" + row) * height))
        + png_chunk(b"IEND", b"")
    )


def test_a_profile_goes_only_with_the_pixels_it_describes(engine):
    # Greyscale sent as it is: its grey profile is kept...
    grey = photo("JPEG", (300, 200), mode="L", icc=GREY_PROFILE)
    image = assert_no_metadata(sent_bytes(prepare_source(store("products/grey.jpg", grey))))
    assert image.mode == "L" and image.info["icc_profile"] == GREY_PROFILE
    # ...but not once the pixels are made RGB: it does not describe RGB pixels.
    grey = photo("JPEG", (300, 200), mode="L", icc=GREY_PROFILE, orientation=6)
    image = decoded(prepare_source(store("products/grey-turned.jpg", grey)))
    assert image.mode == "RGB" and "icc_profile" not in image.info
    # CMYK made RGB: no CMYK profile either (libvips attaches one of its own, a megabyte).
    cmyk = photo("JPEG", (300, 200), mode="CMYK", icc=None, orientation=6)
    image = decoded(prepare_source(store("products/cmyk-turned.jpg", cmyk)))
    assert image.mode == "RGB" and "icc_profile" not in image.info
    # 16-bit RGB is only made 8-bit: the same colours, so the profile still describes them.
    image = decoded(prepare_source(store("products/deep.png", rgb16_png((60, 40), orientation=6))))
    assert image.size == (40, 60) and image.info["icc_profile"] == P3_PROFILE
    assert abs(image.getpixel((20, 30))[0] - 50_000 // 256) <= 2


def test_a_photo_the_stripper_does_not_understand_is_encoded_anew_without_metadata(engine, caplog):
    data = photo("JPEG", (300, 400))
    after_jfif = 4 + struct.unpack(">H", data[4:6])[0]
    # Two stray bytes between segments: decoders skip them with a warning; the stripper does
    # not guess what they are.
    odd = data[:after_jfif] + b"\x00\x17" + data[after_jfif:]
    with caplog.at_level(logging.INFO, logger="hidream_models"):
        prepared = prepare_source(store("products/odd.jpg", odd))
    assert "re-encoding" in caplog.text
    sent = sent_bytes(prepared)
    image = assert_no_metadata(sent)
    assert image.format == "JPEG" and image.size == (300, 400)
    assert image.info["icc_profile"] == P3_PROFILE
    assert jpeg_scan_data(sent) != jpeg_scan_data(data)  # encoded anew


# -- refusals -----------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(600, 800), (5000, 3000)])
@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_image_is_damaged(monkeypatch, fmt, size):
    # Not on the engine fixture: libvips refuses it and hands it to Pillow, which names the
    # damage, as it does without libvips; the libvips side of that is tested below.
    name = store(f"products/cut.{fmt.lower()}", make_image_bytes(size=size, fmt=fmt)[:-2000])
    with pytest.raises(ImageProblem) as info:
        prepare_source(name)
    assert "damaged" in str(info.value) and name in str(info.value)
    monkeypatch.setattr(images_vips, "pyvips", None)
    with pytest.raises(ImageProblem, match="damaged"):
        prepare_source(name)


@needs_vips
@pytest.mark.parametrize("size", [(600, 800), (5000, 3000)])
def test_libvips_refuses_a_truncated_jpeg_itself(caplog, size):
    name = store("products/cut.jpg", make_image_bytes(size=size)[:-2000])
    with caplog.at_level(logging.INFO, logger="hidream_models.images_vips"):
        assert images_vips.prepare(name, default_storage, "The product image") is None
    assert "libvips could not prepare" in caplog.text


def test_pixel_bomb_is_refused_from_its_header(engine, monkeypatch, settings):
    # Only the header is stored: a decode would find it damaged, so the pixel-cap message
    # proves the refusal came before any decoding, and libvips never loaded it.
    monkeypatch.setattr(images_vips, "_load", lambda *a, **k: pytest.fail("decoded"))
    name = store("products/bomb.png", make_image_bytes(size=(600, 800), fmt="PNG")[:64])
    settings.HIDREAM_MAX_IMAGE_PIXELS = 1000
    with pytest.raises(ImageProblem) as info:
        prepare_source(name)
    assert "HIDREAM_MAX_IMAGE_PIXELS" in str(info.value)
    assert "damaged" not in str(info.value)


def test_missing_file_and_non_image(engine):
    with pytest.raises(ImageProblem, match="missing"):
        prepare_source("products/not-there.jpg")
    with pytest.raises(ImageProblem, match="not an image"):
        prepare_source(store("products/notes.jpg", b"plain text, not a picture\n"))


def test_url_mode_never_uses_libvips(monkeypatch, settings):
    settings.HIDREAM_SOURCE_IMAGE_MODE = "url"
    settings.MEDIA_URL = "https://cdn.example.com/media/"
    monkeypatch.setattr(images_vips, "prepare", lambda *a: pytest.fail("libvips used"))
    data = jpeg((5000, 3000))
    prepared = prepare_source(store("products/abs.jpg", data))
    assert prepared.mode == "url" and (prepared.width, prepared.height) == (5000, 3000)
    assert prepared.sha256 == hashlib.sha256(data).hexdigest()


# -- pieces -------------------------------------------------------------------------------------


class ShortReads(io.BytesIO):
    """A stream that gives at most 1,000 bytes a read, as network streams may."""

    def read(self, size=-1):
        return super().read(1000 if size is None or size < 0 else min(size, 1000))


@pytest.mark.parametrize("length", [0, 1, 2, 3, 999, 1000, 1001, images_vips.CHUNK + 1])
def test_base64_of_a_stream_matches_b64encode_whatever_the_reads(length):
    data = bytes(range(256)) * (length // 256 + 1)
    data = data[:length]
    value, digest = images_vips._base64(ShortReads(data))
    assert value == base64.b64encode(data).decode("ascii")
    assert digest == hashlib.sha256(data).hexdigest()
