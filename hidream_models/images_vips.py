"""The libvips path of ``prepare_source`` in the base64 mode, used when pyvips is installed.

``pip install hidream-models[vips]`` installs pyvips and a build of libvips. Pillow holds a
photo whole: the file, then the decoded bitmap (a 6000×4000 JPEG decoded at 1/2 is 3000×2000
pixels of 4 bytes, 23 MiB, nine times its base64). libvips streams it instead, a few hundred
lines at a time, through shrink-on-load, resize, EXIF rotation and encoding, so preparing a big
photo costs about three times its base64 rather than fifteen (docs/performance.md, goal 5).

The checks stay where they were. Pillow's ``open_checked`` reads the header and refuses a
pixel bomb before a byte of pixel data is decoded. libvips then loads the file with the loader
of the format Pillow named (never by sniffing it itself) and fails on any decoding error, and
an image that already fits and needs no rotation is still decoded whole before the shop's
file is sent. Whenever libvips cannot do the work (another format, or any error of its own,
such as a truncated file), ``prepare`` returns None and the Pillow path prepares the image as
before: a damaged file gets Pillow's "damaged" message, exactly as without libvips.

No private metadata is sent, as on the Pillow path. The shop's file is sent with its EXIF,
XMP, IPTC and comments taken out by ``image_metadata``, streamed through a temporary file as
the encoded picture is, its compressed pixel data untouched. A re-encoded picture is saved
with no metadata but its ICC profile, and with that only while the profile still describes
the pixels (RGB in, RGB out).
"""

from __future__ import annotations

import base64
import ctypes
import functools
import hashlib
import logging
import os
import tempfile
from typing import IO

from django.core.files.storage import Storage

from .image_metadata import MetadataError, icc_colour_space, strip_metadata
from .images import MAX_SIDE, PreparedSource, jpeg_scale, open_checked, open_storage_file

try:
    import pyvips
except (ImportError, OSError):  # not installed, or installed without a libvips it can load
    pyvips = None

logger = logging.getLogger(__name__)

MIN_LIBVIPS = (8, 15)  # savers' keep= (8.15); the loaders' fail_on (8.12)
#: Pillow's format name → the libvips loader for it
LOADERS = {"JPEG": "jpegload_source", "PNG": "pngload_source", "WEBP": "webpload_source"}
JPEG_QUALITY = 92  # as the Pillow path
#: libvips interpretations whose pixels ``colourspace("srgb")`` leaves in the same RGB space
#: (16-bit RGB is only shifted to 8 bits), so that their ICC profile still describes them.
#: Greyscale and CMYK are converted to other pixels: their profile would no longer fit.
RGB_INTERPRETATIONS = frozenset({"srgb", "rgb16"})
ICC_FIELD = "icc-profile-data"
#: Read and base64-encode files in pieces of this size: a multiple of 3, so the pieces'
#: base64 joins up without padding in the middle.
CHUNK = 3 * 64 * 1024


def available() -> bool:
    """True when pyvips imports and its libvips is recent enough."""
    return pyvips is not None and pyvips.at_least_libvips(*MIN_LIBVIPS)


def prepare(name: str, storage: Storage, what: str) -> PreparedSource | None:
    """Prepare a stored image for the base64 mode, or None when Pillow should do it.

    Raises ``ImageProblem`` as Pillow's path does for a missing file, a file that is not an
    image and an image over ``HIDREAM_MAX_IMAGE_PIXELS``: those are decided from the header.
    """
    with open_storage_file(name, storage, what) as fh:
        header = open_checked(fh, what)
        fmt, size = header.format, header.size
        del header  # only its format and size were wanted: no pixel is decoded by Pillow
        if fmt not in LOADERS:
            return None
        try:
            return _prepare(fh, fmt, size, name)
        except (pyvips.Error, OSError) as exc:  # OSError: the temporary file, a storage read
            error = " ".join(str(exc).split())
            logger.info("libvips could not prepare %s (%s); Pillow will.", name, error)
            return None


@functools.cache
def _configure() -> None:
    """One libvips worker thread, unless ``VIPS_CONCURRENCY`` asks for more (process-wide).

    A job prepares one photo and waits on HiDream's answer anyway; each more thread adds its
    own strip buffers, a megabyte a thread for a big photo, for a gain of a few ms.
    """
    if not os.environ.get("VIPS_CONCURRENCY"):
        pyvips.concurrency_set(1)


@functools.cache
def _malloc_trim():
    """glibc's ``malloc_trim``, or None on a C library without it (musl, macOS)."""
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None


def _release_freed_memory() -> None:
    """Give back to the system what libvips's threads have freed, before the base64 is made.

    libvips's worker threads allocate their strip buffers in malloc arenas of their own;
    glibc keeps what they free there, where the base64 (made in this thread) cannot reuse
    it: a big photo would leave ~3 MiB idle under its two copies of the payload.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def _prepare(fh: IO[bytes], fmt: str, size: tuple[int, int], name: str) -> PreparedSource:
    _configure()
    scale = jpeg_scale(size) if fmt == "JPEG" else 1
    # The source must outlive every image made from it: libvips calls back into it, and
    # pyvips aborts the process if the Python object behind a callback is gone.
    image, source = _load(fh, fmt, shrink=scale)
    orientation = image.get("orientation") if image.get_typeof("orientation") else 1
    upright = orientation in (0, 1)
    if scale == 1 and upright and max(image.width, image.height) <= MAX_SIDE:
        width, height = image.width, image.height
        del image, source
        _decode_all(fh, fmt)
        # Already fine: the shop's file, without its metadata, its pixel data untouched.
        prepared = _stripped(fh, fmt, width, height, name)
        if prepared is not None:
            return prepared
        image, source = _load(fh, fmt)  # a layout the stripper does not know: encode anew

    loaded_as = image.interpretation  # before any conversion: does the ICC profile fit?
    if max(image.width, image.height) > MAX_SIDE:  # JPEG shrink-on-load can leave it above
        factor = MAX_SIDE / max(image.width, image.height)
        if image.hasalpha():
            # Resized premultiplied, or the colour of transparent pixels bleeds into edges.
            image = image.premultiply().resize(factor).unpremultiply().cast(image.format)
        else:
            image = image.resize(factor)
    if not upright:
        # Turning reads the pixels in another order than the file holds them: the (already
        # shrunk) picture is held in memory for that, as Pillow would hold it anyway.
        image = image.copy_memory().autorot()
    if image.interpretation != "srgb" or image.format != "uchar":
        image = image.colourspace("srgb")  # greyscale, 16-bit, CMYK: 8-bit RGB(A) as Pillow
    keep = "icc" if _profile_fits(image, loaded_as) else "none"

    # The encoded picture goes to a temporary file, not to memory: libvips's buffers are at
    # their largest while it encodes, and the base64 is made only once they are freed.
    with tempfile.TemporaryFile() as out:
        target = pyvips.TargetCustom()
        target.on_write(lambda chunk: out.write(chunk))
        # No metadata is kept (EXIF with its GPS position, XMP, comments) but the ICC
        # profile, as on Pillow's path.
        if image.hasalpha():
            image.pngsave_target(target, keep=keep)
        else:
            # Chroma subsampling as Pillow's JPEGs (libvips leaves it off from Q 90 up,
            # which makes the file, and the request, ~70 % larger for no visible gain).
            image.jpegsave_target(target, Q=JPEG_QUALITY, subsample_mode="on", keep=keep)
        width, height = image.width, image.height
        del image, target, source
        _release_freed_memory()
        out.seek(0)
        value, digest = _base64(out)
    return PreparedSource(value, "base64", digest, width, height, reference=name)


def _stripped(fh: IO[bytes], fmt: str, width: int, height: int, name: str) -> PreparedSource | None:
    """The stored file without its metadata, as base64; None when the stripper refuses it.

    The stripped copy is streamed to a temporary file and encoded from there in pieces, as the
    shop's file was: neither is ever whole in memory.
    """
    with tempfile.TemporaryFile() as out:
        fh.seek(0)
        try:
            strip_metadata(fh, out, fmt)
        except MetadataError as exc:  # libvips decoded it, but its layout is not a known one
            logger.info("%s: metadata not removable as is (%s); re-encoding.", name, exc)
            return None
        out.seek(0)
        value, digest = _base64(out)
    return PreparedSource(value, "base64", digest, width, height, reference=name)


def _profile_fits(image, loaded_as: str) -> bool:
    """Whether the ICC profile ``image`` carries still describes its (8-bit RGB) pixels.

    Only when they were RGB as loaded and the profile is an RGB one: ``colourspace("srgb")``
    leaves a greyscale or CMYK image's profile attached to the RGB pixels it makes (for CMYK
    it even attaches its own CMYK profile, a megabyte), and libvips would save it as it is.
    """
    if loaded_as not in RGB_INTERPRETATIONS or not image.get_typeof(ICC_FIELD):
        return False
    return icc_colour_space(image.get(ICC_FIELD)) == "RGB"


def _load(fh: IO[bytes], fmt: str, *, shrink: int = 1):
    """The image (lazily: only its header is read here) and the source it reads from."""
    fh.seek(0)
    source = pyvips.SourceCustom()
    source.on_read(fh.read)
    if fh.seekable():  # without it libvips keeps all it has read in memory, to go back
        source.on_seek(fh.seek)
    options: dict = {"access": "sequential", "fail_on": "error"}
    if shrink > 1 and fmt == "WEBP":
        options["scale"] = 1 / shrink  # libwebp scales while it decodes, as libjpeg shrinks
    elif shrink > 1:
        options["shrink"] = shrink
    return getattr(pyvips.Image, LOADERS[fmt])(source, **options), source


def _decode_all(fh: IO[bytes], fmt: str) -> None:
    """Decode every pixel, to refuse a damaged file that is about to be sent as it is.

    In bounded memory: a PNG streams through a few lines at a time; a JPEG and a WebP are
    decoded at 1/8 scale, every byte still read and checked at a 64th of the memory (a
    lossless WebP of 8944×8944 pixels in 3 KB holds 44 MB so, not 600).
    """
    image, source = _load(fh, fmt, shrink=1 if fmt == "PNG" else 8)
    image.avg()
    del image, source


def decode_whole(fh: IO[bytes], fmt: str) -> bool:
    """Decode every pixel of ``fh`` (a ``fmt`` file Pillow has opened); True once done.

    False when libvips is not there or does not take the format: Pillow decodes it then
    (``images.verify_image``). A file libvips fails on raises its error: handing it to
    Pillow instead would decode it whole in memory, which is what this is here to avoid.
    """
    if not available() or fmt not in LOADERS:
        return False
    _configure()
    try:
        _decode_all(fh, fmt)
    finally:
        fh.seek(0)
    return True


def _base64(fh: IO[bytes]) -> tuple[str, str]:
    """The file's base64 and its sha256, read in pieces: the file is never whole in memory."""
    digest = hashlib.sha256()
    encoded = bytearray()
    pending = b""
    while chunk := fh.read(CHUNK):
        digest.update(chunk)
        if pending:
            chunk = pending + chunk
        cut = len(chunk) - len(chunk) % 3  # a short read must not put padding mid-stream
        encoded += base64.b64encode(memoryview(chunk)[:cut])
        pending = chunk[cut:]
    encoded += base64.b64encode(pending)
    value = encoded.decode("ascii")
    del encoded
    return value, digest.hexdigest()
