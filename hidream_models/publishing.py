"""The publisher: the one piece of shop code that puts an approved picture on a product.

The app cannot know how a shop stores product photos, so it calls a class the shop names in
``HIDREAM_PUBLISHER``. A publisher implements two methods::

    from hidream_models.publishing import HiDreamPublisher

    class GalleryPublisher(HiDreamPublisher):
        def publish(self, image, target):
            product = image.task.product
            photo = product.photos.create(file=copy_of(image.file), ai_generated=True,
                                          alt_text=self.alt_text(image))
            return {"photo": photo.pk}          # kept on the picture, handed to unpublish()

        def unpublish(self, image, state):
            Photo.objects.filter(pk=state.get("photo")).delete()

``publish`` returns a JSON-serialisable dict with whatever ``unpublish`` needs to undo it
exactly (e.g. the previous main image). Both run inside the database transaction that records
the change, so an exception rolls everything back and the caller sees a clear error.
"""

from __future__ import annotations

from functools import cache

from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string
from django.utils.translation import gettext as _

from .conf import hidream_settings


class HiDreamPublisher:
    """Base class of a shop's publisher; subclasses implement ``publish`` and ``unpublish``."""

    #: Targets this publisher supports ("gallery", "main").
    targets: tuple[str, ...] = ("gallery", "main")

    def publish(self, image, target: str) -> dict:
        """Show ``image`` (a stored GeneratedImage) on its product; return undo state."""
        raise NotImplementedError

    def unpublish(self, image, state: dict) -> None:
        """Undo ``publish`` exactly, using the state it returned."""
        raise NotImplementedError

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
