"""Image handling: preparing a product photo for HiDream, and checking the pictures it returns.

Both directions check with Pillow, and a pixel cap (``HIDREAM_MAX_IMAGE_PIXELS``) *before*
decoding, so a decompression bomb is refused while it is still a header. A product photo sent
as base64 is then shrunk and encoded by libvips when pyvips is installed (``images_vips``:
a fraction of the memory), by Pillow otherwise and in the url mode.

In the base64 mode nothing private leaves the shop with the picture: a photo that already fits
and is upright is sent as the shop's file with its EXIF (GPS position included), XMP, IPTC and
comments taken out of the container, its compressed pixel data untouched (``image_metadata``);
a photo that is turned or shrunk is encoded anew without any of them. Both keep the ICC colour
profile while it still describes the pixels. The url mode sends the stored file's URL: HiDream
fetches that file as it is.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import tempfile
from dataclasses import dataclass
from typing import IO

from django.core.files.storage import Storage, default_storage
from django.utils.translation import gettext as _
from PIL import Image, ImageOps, UnidentifiedImageError

from .conf import hidream_settings
from .image_metadata import MetadataError, icc_colour_space, strip_metadata_bytes
from .rules import is_http_url

logger = logging.getLogger(__name__)

ORIENTATION_TAG = 0x0112
MAX_SIDE = 4096  # HiDream's "4K" limit, read as the longest side (API-REFERENCE §2)
PASSTHROUGH_FORMATS = {"JPEG", "PNG", "WEBP"}
RESULT_FORMATS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}
#: The colour model of a Pillow mode's pixels, to match against an ICC profile's colour space
#: (a palette holds RGB colours). Modes not here (16-bit grey, "1", ...) keep no profile.
COLOUR_MODELS = {
    "RGB": "RGB",
    "RGBA": "RGB",
    "P": "RGB",
    "L": "GRAY",
    "LA": "GRAY",
    "CMYK": "CMYK",
}
#: What of ``Image.info`` a re-encoded picture may take with it: Pillow's savers copy some
#: keys from ``info`` unasked (the JPEG saver the comment, the PNG saver the ICC profile).
#: Only the palette's transparency is needed; the profile is passed explicitly.
KEPT_INFO = ("transparency",)


class ImageProblem(ValueError):
    """A file is missing, unreadable or not an acceptable image; ``str()`` says which."""


@dataclass(frozen=True)
class PreparedSource:
    """The product image as it will be sent: ``value`` is base64 (no prefix) or a URL."""

    value: str
    mode: str
    sha256: str
    width: int
    height: int
    reference: str  # the storage name, for the task's snapshot


@dataclass(frozen=True)
class CheckedImage:
    """A verified picture: its format, file extension and size in pixels."""

    format: str
    extension: str
    width: int
    height: int


def open_checked(fp: IO[bytes], what: str) -> Image.Image:
    """Open an image lazily and refuse it if it is not one or has too many pixels."""
    try:
        image = Image.open(fp)
    except UnidentifiedImageError:
        raise ImageProblem(
            _("%(what)s is not an image Pillow can read.") % {"what": what}
        ) from None
    except (OSError, Image.DecompressionBombError) as exc:
        raise ImageProblem(
            _("%(what)s could not be read: %(error)s") % {"what": what, "error": exc}
        ) from None
    width, height = image.size
    if width * height > hidream_settings.MAX_IMAGE_PIXELS:
        raise ImageProblem(
            _(
                "%(what)s is %(w)s×%(h)s pixels, more than the %(max)s allowed "
                "(HIDREAM_MAX_IMAGE_PIXELS)."
            )
            % {"what": what, "w": width, "h": height, "max": hidream_settings.MAX_IMAGE_PIXELS}
        )
    return image


def verify_image(fp: IO[bytes], what: str) -> CheckedImage:
    """Fully verify a picture (headers and data) and describe it.

    Every byte of picture data is decoded, in bounded memory where libvips is installed
    (``images_vips.decode_whole``); else by Pillow, which holds the decoded picture (a JPEG at
    1/8 scale). A phone's JPEG that Pillow names MPO (it carries more pictures after the
    first) counts as the JPEG it is.
    """
    image = open_checked(fp, what)
    fmt = "JPEG" if image.format == "MPO" else image.format or ""
    if fmt not in RESULT_FORMATS:
        raise ImageProblem(
            _("%(what)s is a %(format)s file; JPEG, PNG or WebP was expected.")
            % {"what": what, "format": fmt or _("unknown")}
        )
    if fmt == "PNG" and image.info.get("interlace") and image.width * image.height > MAX_SIDE**2:
        # An interlaced PNG can only be decoded whole (by libvips too): a tiny one of many
        # pixels would hold hundreds of megabytes. HiDream takes 4096 px a side anyway.
        raise ImageProblem(
            _(
                "%(what)s is an interlaced PNG of more than %(side)s×%(side)s pixels: save it "
                "without interlacing, or smaller."
            )
            % {"what": what, "side": MAX_SIDE}
        )
    # Imported here: images_vips builds on this module.
    from . import images_vips

    try:
        image.verify()
        # verify() leaves the image unusable and skips pixel data for some formats: a real
        # decode of a reopened copy catches truncated files too.
        fp.seek(0)
        if not images_vips.decode_whole(fp, fmt):
            fp.seek(0)
            with Image.open(fp) as again:
                if fmt == "JPEG":  # every byte still read and checked, at a 64th of the memory
                    again.draft("RGB", (max(1, again.width // 8), max(1, again.height // 8)))
                again.load()
    except Exception as exc:  # Pillow raises many types for corrupt data
        raise ImageProblem(
            _("%(what)s is damaged: %(error)s") % {"what": what, "error": exc}
        ) from None
    return CheckedImage(fmt, RESULT_FORMATS[fmt], *image.size)


def prepare_source(name: str, storage: Storage | None = None) -> PreparedSource:
    """Read a product image from storage and make it ready to send (see the module doc).

    Raises ``ImageProblem`` for a missing, unreadable or non-image file: the caller fails the
    task with that text and makes no remote call.
    """
    storage = storage or default_storage
    what = _("The product image “%(name)s”") % {"name": name}
    if not name:
        raise ImageProblem(_("The product has no image to send."))
    # Imported here: images_vips builds on this module.
    from . import images_vips

    if hidream_settings.SOURCE_IMAGE_MODE == "base64" and images_vips.available():
        prepared = images_vips.prepare(name, storage, what)
        if prepared is not None:
            return prepared
        # None: not an image libvips should take (or it could not); Pillow decides below.
    return _prepare_with_pillow(name, storage, what)


def open_storage_file(name: str, storage: Storage, what: str) -> IO[bytes]:
    """Open a stored file for reading, as an ``ImageProblem`` when it cannot be."""
    try:
        return storage.open(name, "rb")
    except FileNotFoundError:
        raise ImageProblem(_("%(what)s is missing from storage.") % {"what": what}) from None
    except OSError as exc:
        raise _unreadable(what, exc) from None


def _unreadable(what: str, exc: OSError) -> ImageProblem:
    return ImageProblem(
        _("%(what)s could not be read from storage: %(error)s") % {"what": what, "error": exc}
    )


def _prepare_with_pillow(name: str, storage: Storage, what: str) -> PreparedSource:
    """The Pillow path: the url mode, and the base64 mode when libvips is not there.

    It holds the file and the decoded bitmap in memory (a 6000×4000 JPEG: ~40 MiB).
    """
    try:
        with open_storage_file(name, storage, what) as fh:
            data = fh.read()
    except OSError as exc:  # opening was checked; this is the read
        raise _unreadable(what, exc) from None

    image = open_checked(io.BytesIO(data), what)
    original_size = image.size
    _decode_small(image)
    try:
        image.load()
    except Exception as exc:
        raise ImageProblem(
            _("%(what)s is damaged: %(error)s") % {"what": what, "error": exc}
        ) from None

    if hidream_settings.SOURCE_IMAGE_MODE == "url":
        url = storage.url(name)
        if not is_http_url(url):
            raise ImageProblem(
                _(
                    "HIDREAM_SOURCE_IMAGE_MODE is 'url' but the storage gives the relative URL "
                    "“%(url)s”: HiDream needs an absolute, public http(s) URL. Use 'base64' or "
                    "a storage with absolute URLs (e.g. S3)."
                )
                % {"url": url}
            )
        return PreparedSource(
            url, "url", hashlib.sha256(data).hexdigest(), *original_size, reference=name
        )

    encoded, width, height = _fit_and_encode(
        image, data, resized=image.size != original_size, name=name
    )
    del image, data  # the bitmap and the file: only the encoded bytes are needed now
    return PreparedSource(
        base64.b64encode(encoded).decode("ascii"),
        "base64",
        hashlib.sha256(encoded).hexdigest(),
        width,
        height,
        reference=name,
    )


def jpeg_scale(size: tuple[int, int]) -> int:
    """How much to shrink a JPEG while decoding it (1, 2, 4 or 8, by its DCT scaling): the
    least that fits 4096 px, or 8 at most. A 6000×4000 photo is decoded as 3000×2000 instead
    of being decoded whole and then shrunk."""
    scale = 1
    while max(size) / scale > MAX_SIDE and scale < 8:
        scale *= 2
    return scale


def _decode_small(image: Image.Image) -> None:
    """Ask the JPEG decoder for the largest DCT scale (1/2, 1/4, 1/8) that already fits 4096
    px, so a 6000×4000 photo is decoded as 3000×2000 instead of being decoded whole and then
    shrunk: a quarter of the memory, and still within HiDream's 4K."""
    if image.format != "JPEG" or max(image.size) <= MAX_SIDE:
        return
    scale = jpeg_scale(image.size)
    image.draft("RGB", (-(-image.width // scale), -(-image.height // scale)))


def _fit_and_encode(
    image: Image.Image, original: bytes, *, resized: bool = False, name: str = ""
) -> tuple[bytes, int, int]:
    """EXIF-orient, shrink to ≤ 4096 px on the long side (never enlarge), encode; without
    EXIF, XMP or comments either way, with the ICC profile while it fits the pixels."""
    changed = resized or image.getexif().get(ORIENTATION_TAG, 1) != 1
    if changed or max(image.size) > MAX_SIDE:
        # In place: a copy of a decoded 3000×2000 photo is another 23 MiB.
        ImageOps.exif_transpose(image, in_place=True)
    oriented = image
    if max(oriented.size) > MAX_SIDE:
        oriented.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
        changed = True
    if not changed and image.format in PASSTHROUGH_FORMATS:
        # Already fine: the shop's file, its metadata taken out and its pixel data untouched.
        try:
            return strip_metadata_bytes(original, image.format), *image.size
        except MetadataError as exc:  # decoded fine, but not a layout the stripper knows
            logger.info("%s: metadata not removable as is (%s); re-encoding.", name, exc)
    profile = oriented.info.get("icc_profile")
    oriented.info = {key: oriented.info[key] for key in KEPT_INFO if key in oriented.info}
    out = io.BytesIO()
    has_alpha = oriented.mode in ("RGBA", "LA") or (
        oriented.mode == "P" and "transparency" in oriented.info
    )
    if has_alpha:
        icc = _fitting_profile(profile, oriented.mode, oriented.mode)
        oriented.save(out, "PNG", optimize=False, icc_profile=icc)
    else:
        # convert() copies even an RGB image: only convert what is not RGB already.
        rgb = oriented if oriented.mode == "RGB" else oriented.convert("RGB")
        icc = _fitting_profile(profile, oriented.mode, "RGB")
        rgb.save(out, "JPEG", quality=92, icc_profile=icc)
    return out.getvalue(), *oriented.size


def _fitting_profile(profile: bytes | None, mode: str, saved_mode: str) -> bytes | None:
    """The ICC profile to save with pixels of ``mode`` saved as ``saved_mode``, or None.

    Turning and shrinking keep the pixels' colour space, so the profile still fits them. A
    conversion to another colour model (greyscale or CMYK to RGB: Pillow's ``convert`` does
    not use the profile) leaves a profile that no longer describes them: it is dropped, and
    the RGB pixels are read as sRGB, as they would have been before.
    """
    model = COLOUR_MODELS.get(mode)
    if model is None or model != COLOUR_MODELS.get(saved_mode):
        return None
    return profile if icc_colour_space(profile) == model else None


def orientation_of(fp: IO[bytes]) -> int:
    """The picture's EXIF orientation (1, upright, when it has none or an odd value)."""
    fp.seek(0)
    try:
        with Image.open(fp) as image:
            value = image.getexif().get(ORIENTATION_TAG, 1)
    except Exception:  # Pillow raises many types for a damaged EXIF block: as if none
        value = 1
    finally:
        fp.seek(0)
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def encode_upright(fp: IO[bytes], fmt: str) -> IO[bytes]:
    """The picture turned upright by its EXIF orientation and encoded anew in its own format,
    with no metadata but its ICC colour profile (Pillow holds the decoded picture).

    For an upload that is stored: its orientation lives in the EXIF that is taken out, so the
    stored file must be upright itself.
    """
    fp.seek(0)
    out = tempfile.SpooledTemporaryFile(max_size=1024 * 1024)  # noqa: SIM115 (returned)
    with Image.open(fp) as image:
        profile = image.info.get("icc_profile")
        upright = ImageOps.exif_transpose(image)
        # exif_transpose copies ``info``: what savers copy from it unasked (a comment) stays.
        upright.info = {key: upright.info[key] for key in KEPT_INFO if key in upright.info}
        # PNG is lossless; JPEG and WebP at a quality where a re-encode is not seen.
        options = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
        upright.save(out, fmt, icc_profile=profile, **options)
    out.seek(0)
    return out
