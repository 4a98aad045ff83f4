"""The demo shop's products: a main image and an ordered gallery."""

from django.db import models
from django.utils.translation import gettext_lazy as _


class Product(models.Model):
    """A product of the demo shop."""

    name = models.CharField(
        max_length=200, help_text=_("Name shown in the shop."), verbose_name=_("name")
    )
    sku = models.CharField(
        max_length=64, unique=True, help_text=_("Stock keeping unit."), verbose_name=_("SKU")
    )
    price = models.DecimalField(
        max_digits=10, decimal_places=2, help_text=_("Price in EUR."), verbose_name=_("price")
    )
    description = models.TextField(
        blank=True, help_text=_("Shown on the product page."), verbose_name=_("description")
    )
    image = models.ImageField(
        upload_to="products/",
        blank=True,
        help_text=_("Main product photo."),
        verbose_name=_("image"),
    )
    image_alt_text = models.CharField(
        max_length=300,
        blank=True,
        help_text=_("Alternative text of the main photo."),
        verbose_name=_("image alt text"),
    )
    image_ai_generated = models.BooleanField(
        default=False,
        help_text=_("The main photo was made by AI (HiDream)."),
        verbose_name=_("AI-generated main image"),
    )

    class Meta:
        ordering = ["name"]
        verbose_name = _("product")
        verbose_name_plural = _("products")

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        from django.urls import reverse

        return reverse("catalog:product", args=[self.pk])


class ProductImage(models.Model):
    """One picture in a product's gallery, possibly an AI-generated model photo."""

    product = models.ForeignKey(
        Product,
        on_delete=models.CASCADE,
        related_name="gallery",
        help_text=_("The product."),
        verbose_name=_("product"),
    )
    image = models.ImageField(
        upload_to="products/gallery/", help_text=_("The picture."), verbose_name=_("image")
    )
    position = models.PositiveIntegerField(
        default=0, help_text=_("Order in the gallery."), verbose_name=_("position")
    )
    alt_text = models.CharField(
        max_length=300, blank=True, help_text=_("Alternative text."), verbose_name=_("alt text")
    )
    ai_generated = models.BooleanField(
        default=False,
        help_text=_("Made by AI (HiDream); shown as such in the shop."),
        verbose_name=_("AI-generated"),
    )
    generated_image = models.ForeignKey(
        "hidream_models.GeneratedImage",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text=_("The generated picture this came from."),
        verbose_name=_("generated image"),
    )

    class Meta:
        ordering = ["product", "position", "pk"]
        verbose_name = _("product image")
        verbose_name_plural = _("product images")

    def __str__(self) -> str:
        return f"{self.product} #{self.position}"
