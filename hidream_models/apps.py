"""App configuration: registers the system checks."""

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class HiDreamModelsConfig(AppConfig):
    """The ``hidream_models`` app."""

    name = "hidream_models"
    verbose_name = _("HiDream model images")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import (
            checks,  # noqa: F401  (registers the checks)
            signals,  # noqa: F401  (connects the delete hooks: no picture stranded)
        )
