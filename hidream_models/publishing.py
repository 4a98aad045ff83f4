"""The publisher: the one piece of shop code that puts an approved picture on a product.

The app cannot know how a shop stores product photos, so it calls a class the shop names in
``HIDREAM_PUBLISHER``. A publisher implements two methods, and a third when publishing a
picture as the main image replaces the product's own photo::

    from hidream_models.publishing import HiDreamPublisher

    class GalleryPublisher(HiDreamPublisher):
        def publish(self, image, target):
            product = Product.objects.select_for_update().get(pk=image.task.object_id)
            photo = product.photos.create(file=self.store_copy(image), ai_generated=True,
                                          alt_text=self.alt_text(image))
            return {"photo": photo.pk}          # kept on the picture, handed to unpublish()

        def unpublish(self, image, state):
            Photo.objects.filter(pk=state.get("photo")).delete()

        def original_photo(self, product, photo):
            return product.photos.filter(ai_generated=False).first()   # the shop's own one

What the app guarantees, and what a publisher must keep to:

- **All or nothing.** ``publish`` and ``unpublish`` run inside the database transaction that
  records the change, after the app has locked the product's row (``select_for_update``, before
  it reads which picture is the main image): two publications of one product never interleave,
  and an exception rolls everything back, the caller seeing a clear error.
- **Files are deleted after the commit, never inside the transaction.** A rolled-back
  transaction restores rows, not files: a product would point at a deleted file. Store copies
  with ``store_copy``: the app records them in the state (``"files"``), deletes them if the
  publish fails, and deletes them after the unpublish that takes them off commits. To delete
  another file of the app, call ``files.delete_unreferenced_after_commit``; for the shop's own
  files use ``transaction.on_commit``.
- **Undo exactly.** ``publish`` returns a JSON-serialisable dict with whatever ``unpublish``
  needs to restore the product as it was (e.g. the previous main image).
- **An AI picture is never sent back as a product photo.** Before the app sends a product to
  HiDream it asks ``original_photo`` for the product's own photo. The default gives the photo
  the caller's hook found (the admin's ``hidream_image_field``, the API's
  ``HIDREAM_PRODUCT_MODELS`` field) unless it is one of the app's files (under
  ``HIDREAM_STORAGE_PREFIX``, as every ``store_copy`` is). A publisher that replaces the main
  photo overrides it to give back the photo it replaced; ``None`` makes the app refuse, saying
  why. Whatever it returns, a file of the app is never sent.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string
from django.utils.translation import gettext as _

from . import files
from .conf import hidream_settings


class HiDreamPublisher:
    """Base class of a shop's publisher; subclasses implement ``publish`` and ``unpublish``,
    and ``original_photo`` when they replace the product's own photo (see the module doc)."""

    #: Targets this publisher supports ("gallery", "main").
    targets: tuple[str, ...] = ("gallery", "main")

    def publish(self, image, target: str) -> dict:
        """Show ``image`` (a stored GeneratedImage) on its product; return undo state."""
        raise NotImplementedError

    def unpublish(self, image, state: dict) -> None:
        """Undo ``publish`` exactly, using the state it returned."""
        raise NotImplementedError

    def original_photo(self, product, photo: Any) -> Any:
        """The product's own photo to send to HiDream (a file or a storage name), or None when
        it has none.

        ``photo`` is what the caller's photo hook found on the product. The default gives it
        back unless it is one of the app's files (a result, a published copy): then None.
        """
        return None if files.is_app_file(photo) else photo

    def store_copy(self, image) -> str:
        """Copy ``image``'s file for the product; returns the storage name to put on it.

        The copy is the app's (under ``HIDREAM_STORAGE_PREFIX``): never sent back to HiDream,
        recorded in the state, deleted again if the publish fails and after the unpublish.
        """
        return files.store_published_copy(image)

    def alt_text(self, image) -> str:
        """Alternative text for a published picture; says it is AI-generated."""
        label = image.task.product_label or _("Product")
        return _("%(product)s worn by a model (AI-generated image)") % {"product": label}


@cache
def _load(path: str) -> HiDreamPublisher:
    publisher_class = import_string(path)
    if not (isinstance(publisher_class, type) and issubclass(publisher_class, HiDreamPublisher)):
        raise ImproperlyConfigured(
            f"HIDREAM_PUBLISHER {path!r} is not a HiDreamPublisher subclass."
        )
    return publisher_class()


def get_publisher() -> HiDreamPublisher | None:
    """The configured publisher, or None when ``HIDREAM_PUBLISHER`` is empty."""
    path = hidream_settings.PUBLISHER
    return _load(path) if path else None


def original_photo(product, photo: Any) -> Any:
    """The product's own photo to send, per the publisher (the base class's rule without
    one), or None. A file of the app is never given, whatever the publisher says."""
    publisher = get_publisher() or HiDreamPublisher()
    original = publisher.original_photo(product, photo)
    return None if not original or files.is_app_file(original) else original
