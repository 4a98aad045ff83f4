"""The demo shop's publisher: approved pictures go to the product gallery or become the main
image, each a copy of the generated file (``store_copy``: the app's, deleted after the
unpublish commits), flagged as AI-generated with alt text. Unpublishing restores exactly what
was there (the previous main image comes back), and while an AI picture is the main image
``original_photo`` gives HiDream the photo it replaced."""

from __future__ import annotations

from django.contrib.contenttypes.models import ContentType
from django.db.models import Max

from hidream_models.models import GeneratedImage, PublishTarget
from hidream_models.publishing import HiDreamPublisher

from .models import Product, ProductImage


class CatalogPublisher(HiDreamPublisher):
    """Publishes to ``catalog.Product``: ``gallery`` or ``main``."""

    def publish(self, image, target: str) -> dict:
        product = Product.objects.select_for_update().get(pk=image.task.object_id)
        if target == "gallery":
            position = (product.gallery.aggregate(top=Max("position"))["top"] or 0) + 1
            item = ProductImage.objects.create(
                product=product,
                image=self.store_copy(image),
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
        product.image.name = self.store_copy(image)
        product.image_alt_text = self.alt_text(image)
        product.image_ai_generated = True
        product.save(update_fields=["image", "image_alt_text", "image_ai_generated"])
        state["published_image"] = product.image.name
        return state

    def unpublish(self, image, state: dict) -> None:
        # The copies themselves are the app's to delete, after the commit (see the contract).
        if "gallery_item" in state:
            ProductImage.objects.filter(pk=state["gallery_item"]).delete()
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

    def original_photo(self, product, photo):
        """While a generated picture is the main image, the photo it replaced (kept in its
        publication's state); the shop's own photo otherwise."""
        name = getattr(photo, "name", photo) or ""
        main_is_ai = isinstance(product, Product) and product.image_ai_generated
        if main_is_ai and name and name == product.image.name:
            live = (
                GeneratedImage.objects.filter(
                    published_as=PublishTarget.MAIN,
                    task__content_type=ContentType.objects.get_for_model(Product),
                    task__object_id=str(product.pk),
                )
                .values_list("publish_state", flat=True)
                .first()
            )
            photo = (live or {}).get("previous_image") or None
        return super().original_photo(product, photo)
