"""The one place that names and stores the app's files (DESIGN §5).

Every file the app puts in storage gets a name the app makes, under
``HIDREAM_STORAGE_PREFIX``, ending in the extension of the format Pillow decoded (``jpg``,
``png`` or ``webp``): nothing a person or a remote server says about a file (its name, its
extension, its ``Content-Type``) reaches a storage name. A file uploaded as ``pwn.html`` that
decodes as a PNG is stored as ``<prefix>/sources/<random>.png`` and served as ``image/png``,
so it can never become a document on the shop's origin.

- ``result_name``: a generated picture, ``<prefix>/<task>/<sub task>.<ext>``;
- ``preview_name``: a template preview, ``<prefix>/templates/<kind>-<id>.<ext>``;
- ``verify_upload`` + ``store_upload``: a person's upload (API image or mask, the admin's
  mask), ``<prefix>/<folder>/<random>.<ext>``, stored only once the whole file has decoded,
  and without its metadata (``image_metadata``: EXIF with its GPS position, XMP, comments,
  text chunks, whatever trails the picture), since media is usually public.
"""

from __future__ import annotations

import io
import posixpath
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import IO, Any

from django.core.files import File
from django.core.files.storage import default_storage
from django.utils.translation import gettext as _

from .conf import hidream_settings
from .image_metadata import MetadataError, strip_metadata
from .images import CheckedImage, ImageProblem, encode_upright, orientation_of, verify_image

#: Folders for people's uploads, below the prefix.
UPLOAD_FOLDERS = ("sources", "masks")
#: A cleaned upload is kept in memory up to this size, in a temporary file beyond.
SPOOL_BYTES = 1024 * 1024


def _safe_part(value: str) -> str:
    """A remote id as a file-name part: letters, digits, '-' and '_' only, at most 100."""
    return "".join(c for c in str(value) if c.isascii() and (c.isalnum() or c in "-_"))[:100]


def result_name(task_id: Any, sub_task_id: str, extension: str) -> str:
    """Stable name of a generated picture: ``<prefix>/<task>/<sub task>.<ext>``."""
    return posixpath.join(
        hidream_settings.STORAGE_PREFIX,
        _safe_part(str(task_id)),
        f"{_safe_part(sub_task_id) or 'picture'}.{extension}",
    )


def preview_name(kind: str, remote_id: str, extension: str) -> str:
    """Stable name of a template preview: ``<prefix>/templates/<kind>-<id>.<ext>``."""
    return posixpath.join(
        hidream_settings.STORAGE_PREFIX,
        "templates",
        f"{_safe_part(kind)}-{_safe_part(remote_id) or 'template'}.{extension}",
    )


def save_replacing(name: str, fh: IO[bytes]) -> str:
    """Save a verified file under ``name``, replacing what is there; returns the saved name
    (a storage may still change it, e.g. when it cannot replace)."""
    if default_storage.exists(name):
        default_storage.delete(name)
    return default_storage.save(name, File(fh, name=posixpath.basename(name)))


@dataclass(frozen=True)
class VerifiedUpload:
    """A person's image that has decoded whole, without its metadata: only this can be
    stored (``store_upload``)."""

    content: IO[bytes]
    checked: CheckedImage


def verify_upload(data: IO[bytes] | bytes, what: str) -> VerifiedUpload:
    """Decode the whole upload (a file or bytes), describe it, and take its metadata out.

    Raises ``images.ImageProblem`` saying what is wrong when it is not a JPEG, PNG or WebP
    that decodes in full within ``HIDREAM_MAX_IMAGE_PIXELS``.
    """
    fh = io.BytesIO(data) if isinstance(data, bytes | bytearray) else data
    fh.seek(0)
    checked = verify_image(fh, what)
    orientation = orientation_of(fh)
    if orientation != 1:
        # The orientation is EXIF, which is taken out: the stored picture is turned instead.
        fh = encode_upright(fh, checked.format)
        if orientation >= 5:  # a quarter turn
            checked = replace(checked, width=checked.height, height=checked.width)
    fh.seek(0)
    clean = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115 (returned)
    try:
        strip_metadata(fh, clean, checked.format)
    except MetadataError as exc:
        clean.close()
        raise ImageProblem(
            _(
                "%(what)s decodes, but its file layout is unusual (%(error)s): open it in an "
                "image editor, save it again as JPEG, PNG or WebP, and upload that."
            )
            % {"what": what, "error": exc}
        ) from None
    clean.seek(0)
    return VerifiedUpload(clean, checked)


def store_upload(upload: VerifiedUpload, folder: str = "sources") -> str:
    """Store a verified upload under a new name the app makes; returns the storage name."""
    if folder not in UPLOAD_FOLDERS:
        raise ValueError(f"uploads go to one of {UPLOAD_FOLDERS}, not {folder!r}")
    name = posixpath.join(
        hidream_settings.STORAGE_PREFIX, folder, f"{uuid.uuid4().hex}.{upload.checked.extension}"
    )
    upload.content.seek(0)
    return default_storage.save(name, File(upload.content, name=posixpath.basename(name)))


@contextmanager
def stored_uploads() -> Iterator[Callable[[VerifiedUpload, str], str]]:
    """A ``store_upload`` whose files are deleted again when the block raises, so a request
    refused half-way (a database error, an idempotency race) leaves no file without a task.
    """
    names: list[str] = []

    def store(upload: VerifiedUpload, folder: str) -> str:
        names.append(store_upload(upload, folder))
        return names[-1]

    try:
        yield store
    except BaseException:
        for name in names:
            default_storage.delete(name)
        raise
