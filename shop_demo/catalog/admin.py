"""Admin of the demo catalog: products get the HiDream action and task panel."""

from django.contrib import admin
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from hidream_models.admin import HiDreamProductAdminMixin

from .models import Product, ProductImage


class ProductImageInline(admin.TabularInline):
    model = ProductImage
    extra = 0
    fields = ("preview", "image", "position", "alt_text", "ai_generated", "generated_image")
    readonly_fields = ("preview", "generated_image")
    ordering = ("position",)

    @admin.display(description=_("Preview"))
    def preview(self, obj):
        if not obj.image:
            return "–"
        return format_html(
            '<img src="{}" alt="" width="48" height="64" style="object-fit:cover">', obj.image.url
        )


@admin.register(Product)
class ProductAdmin(HiDreamProductAdminMixin, admin.ModelAdmin):
    """Products, with "Generate model images with HiDream" from hidream_models."""

    hidream_image_field = "image"
    list_display = ("photo", "name", "sku", "price")
    list_display_links = ("photo", "name")
    search_fields = ("name", "sku")
    inlines = (ProductImageInline,)

    @admin.display(description=_("Photo"))
    def photo(self, obj):
        if not obj.image:
            return "–"
        return format_html(
            '<img src="{}" alt="{}" width="36" height="48" style="object-fit:cover">',
            obj.image.url,
            obj.name,
        )
