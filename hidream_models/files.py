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
  text chunks, whatever trails the picture), since media is usually public;
- ``store_published_copy``: the copy a publisher puts on a product,
  ``<prefix>/published/<random>.<ext>`` (short: it goes into the shop's own file fields, often
  Django's default of 100 characters).

Everything under the prefix is the app's (``is_app_file``): no photo hook hands such a file
to HiDream as a product's own photo (``publishing.original_photo``), and the app deletes one
once no row names it any more (``referenced_files``), never a file outside the prefix: after
the commit that deleted a task or picture, or unpublished a copy
(``delete_unreferenced_after_commit``), and in ``hidream_purge``'s sweep for orphans.
"""

from __future__ import annotations

import io
import logging
import posixpath
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import IO, Any

from django.core.files import File
from django.core.files.storage import default_storage
from django.db import connection, transaction
from django.utils.translation import gettext as _

from .conf import hidream_settings
from .image_metadata import MetadataError, strip_metadata
from .images import CheckedImage, ImageProblem, encode_upright, orientation_of, verify_image

logger = logging.getLogger(__name__)

#: Folders for people's uploads, below the prefix.
UPLOAD_FOLDERS = ("sources", "masks")
#: Folder, below the prefix, of the copies publishers put on products.
PUBLISHED_FOLDER = "published"
#: Key of a publication's state (``GeneratedImage.publish_state``) listing the storage names of
#: the copies it put on the product; the app fills it in (see ``store_published_copy``).
STATE_FILES = "files"
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


# -- the app's files: recognising, copying for publication, and deleting when unnamed ---------


def storage_prefix() -> str:
    """``HIDREAM_STORAGE_PREFIX`` as a folder, with its slash ("" when the setting is empty)."""
    prefix = hidream_settings.STORAGE_PREFIX.strip("/")
    return f"{prefix}/" if prefix else ""


def is_app_file(name: Any) -> bool:
    """Whether a storage name is one of the app's files: results, uploads, template previews
    and published copies, all under ``HIDREAM_STORAGE_PREFIX``.

    With an empty prefix nothing is: the app could not tell its files from the shop's, so it
    then deletes none of them by sweeping, and recognises none as its own.
    """
    prefix = storage_prefix()
    name = str(getattr(name, "name", name) or "")
    return bool(prefix) and name.startswith(prefix) and ".." not in name.split("/")


# The copies stored by ``store_published_copy`` in the current ``tracking_new_copies`` block.
_new_copies: ContextVar[list[str] | None] = ContextVar("hidream_new_copies", default=None)


@contextmanager
def tracking_new_copies() -> Iterator[list[str]]:
    """Collect the copies ``store_published_copy`` stores in the block (the list yielded),
    and delete them again if the block raises: a publish that fails leaves no copy behind.

    A copy of a block that succeeded but whose transaction an outer block rolls back later
    is named by no row: ``hidream_purge`` removes it as an orphan.
    """
    names: list[str] = []
    token = _new_copies.set(names)
    try:
        yield names
    except BaseException:
        for name in names:
            _delete_quietly(name)
        raise
    finally:
        _new_copies.reset(token)


def store_published_copy(image) -> str:
    """Copy a stored picture (a ``GeneratedImage``) for a publisher to put on a product:
    ``<prefix>/published/<random>.<ext>``; returns the storage name.

    The name marks it as the app's (``is_app_file``), so no photo hook sends it back to
    HiDream. Within ``publish_image`` the app records it in the publication's state
    (``STATE_FILES``) and deletes it after the unpublish that takes it off commits.
    """
    extension = _safe_part(posixpath.splitext(image.file.name)[1].lstrip(".")) or "jpg"
    name = posixpath.join(
        hidream_settings.STORAGE_PREFIX, PUBLISHED_FOLDER, f"{uuid.uuid4().hex}.{extension}"
    )
    with image.file.open("rb") as fh:
        saved = default_storage.save(name, File(fh, name=posixpath.basename(name)))
    tracked = _new_copies.get()
    if tracked is not None:
        tracked.append(saved)
    return saved


def state_files(state: Any) -> list[str]:
    """The storage names a publication's state lists under ``STATE_FILES``."""
    names = state.get(STATE_FILES) if isinstance(state, dict) else None
    if not isinstance(names, list | tuple):
        return []
    return [name for name in names if isinstance(name, str) and name]


def _chunks(names: list[str], size: int = 500) -> Iterator[list[str]]:
    for start in range(0, len(names), size):
        yield names[start : start + size]


def referenced_files(names: Iterable[str]) -> set[str]:
    """Which of ``names`` a row still names: a task's source image or mask, a picture's file,
    a template's preview, or a copy a live publication lists (``STATE_FILES``).

    A few queries per 500 names, whatever the number of rows.
    """
    from .models import GeneratedImage, HiDreamTemplate, ModelImageTask

    wanted = sorted({str(name) for name in names if name})
    if not wanted:
        return set()
    columns = (
        (ModelImageTask, "source_image"),
        (ModelImageTask, "mask"),
        (GeneratedImage, "file"),
        (HiDreamTemplate, "preview"),
    )
    found: set[str] = set()
    for chunk in _chunks(wanted):
        for model, column in columns:
            found.update(
                model.objects.filter(**{f"{column}__in": chunk}).values_list(column, flat=True)
            )
    live = GeneratedImage.objects.exclude(published_as="").values_list("publish_state", flat=True)
    for state in live.iterator():
        found.update(state_files(state))
    return found & set(wanted)


def _delete_quietly(name: str) -> bool:
    try:
        default_storage.delete(name)
    except OSError as exc:  # the row is gone either way: a file left over is the lesser harm
        logger.warning("Could not delete %s: %s", name, exc)
        return False
    return True


def delete_unreferenced(names: Iterable[str]) -> list[str]:
    """Delete the app's files among ``names`` that no row names (``referenced_files``);
    returns the names deleted. A file outside the prefix (a product's own photo) is never
    deleted."""
    candidates = {str(name) for name in names if is_app_file(name)}
    if not candidates:
        return []
    unnamed = sorted(candidates - referenced_files(candidates))
    return [name for name in unnamed if _delete_quietly(name)]


@dataclass(eq=False)
class _AfterCommit:
    """The names one transaction asked to delete; called once, when it commits."""

    names: set[str] = field(default_factory=set)
    done: bool = False

    def __call__(self) -> None:
        self.done = True
        delete_unreferenced(self.names)


def delete_unreferenced_after_commit(names: Iterable[str]) -> None:
    """``delete_unreferenced`` once the surrounding transaction commits (at once without one).

    Deleting inside the transaction would leave a rolled-back row naming a deleted file; after
    the commit, a file whose row is gone is at worst left over (``hidream_purge`` sweeps it).
    The names of one transaction go to one job, so deleting a thousand tasks costs a few
    queries, not a thousand; which names are still in use is decided when it runs.
    """
    names = {str(name) for name in names if is_app_file(name)}
    if not names:
        return
    if not connection.in_atomic_block:
        delete_unreferenced(names)
        return
    for _savepoints, callback, _robust in connection.run_on_commit:
        if isinstance(callback, _AfterCommit) and not callback.done:
            callback.names |= names
            return
    transaction.on_commit(_AfterCommit(names), robust=True)


def app_files(older_than: datetime) -> Iterator[str]:
    """Every file under the app's prefix last modified before ``older_than``.

    A file being written now is younger, so it is never listed. A file whose storage cannot
    tell its modification time is not listed either: nothing is deleted on a guess. Nothing is
    listed when the prefix is empty (see ``is_app_file``).
    """
    prefix = storage_prefix()
    if not prefix:
        return
    folders = [prefix.rstrip("/")]
    while folders:
        folder = folders.pop()
        try:
            subfolders, names = default_storage.listdir(folder)
        except (FileNotFoundError, NotADirectoryError):
            continue
        folders.extend(posixpath.join(folder, sub) for sub in subfolders)
        for base in names:
            name = posixpath.join(folder, base)
            try:
                modified = default_storage.get_modified_time(name)
            except (NotImplementedError, OSError):
                continue
            if modified < older_than:
                yield name
