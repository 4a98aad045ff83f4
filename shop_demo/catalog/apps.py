"""App configuration of the demo catalog."""

from django.apps import AppConfig


class CatalogConfig(AppConfig):
    """The demo shop's catalog app."""

    name = "shop_demo.catalog"
    label = "catalog"
    default_auto_field = "django.db.models.BigAutoField"
