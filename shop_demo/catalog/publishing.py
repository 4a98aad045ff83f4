"""The demo shop's publisher: approved pictures go to the product gallery or become the main
image, each a copy of the generated file, flagged as AI-generated with alt text. Unpublishing
restores exactly what was there (the previous main image comes back)."""

from __future__ import annotations

import posixpath

from django.core.files.base import File
from django.db.models import Max

from hidream_models.publishing import HiDreamPublisher

from .models import Product, ProductImage


def _copy(image, folder: str) -> str:
    storage = image.file.storage
    with image.file.open("rb") as fh:
        name = posixpath.join(folder, f"ai-{image.task_id}-{posixpath.basename(image.file.name)}")
        return storage.save(name, File(fh, name=posixpath.basename(name)))


class CatalogPublisher(HiDreamPublisher):
    """Publishes to ``catalog.Product``: ``gallery`` or ``main``."""

    def publish(self, image, target: str) -> dict:
        product = Product.objects.select_for_update().get(pk=image.task.object_id)
        if target == "gallery":
            position = (product.gallery.aggregate(top=Max("position"))["top"] or 0) + 1
            item = ProductImage.objects.create(
                product=product,
                image=_copy(image, "products/gallery"),
                position=position,
                alt_text=self.alt_text(image),
                ai_generated=True,
                generated_image=image,
            )
            return {"gallery_item": item.pk}
        state = {
            "previous_image": product.image.name or "",
            "previous_alt_text": product.image_alt_text,
            "previous_ai_generated": product.image_ai_generated,
        }
        product.image.name = _copy(image, "products")
        product.image_alt_text = self.alt_text(image)
        product.image_ai_generated = True
        product.save(update_fields=["image", "image_alt_text", "image_ai_generated"])
        state["published_image"] = product.image.name
        return state

    def unpublish(self, image, state: dict) -> None:
        if "gallery_item" in state:
            item = ProductImage.objects.filter(pk=state["gallery_item"]).first()
            if item is not None:
                stored = item.image.name
                item.delete()
                if stored:
                    item.image.storage.delete(stored)
            return
        product = Product.objects.select_for_update().filter(pk=image.task.object_id).first()
        if product is None:
            return
        published = state.get("published_image", "")
        if product.image.name == published:
            product.image.name = state.get("previous_image", "")
            product.image_alt_text = state.get("previous_alt_text", "")
            product.image_ai_generated = state.get("previous_ai_generated", False)
            product.save(update_fields=["image", "image_alt_text", "image_ai_generated"])
        if published:
            product.image.storage.delete(published)
