"""The app's admin: task, picture, callback and template admins, and the product mixin."""

from .product import HiDreamProductAdminMixin, HiDreamTaskInline
from .tasks import (
    CallbackEventAdmin,
    GeneratedImageAdmin,
    HiDreamTemplateAdmin,
    ModelImageTaskAdmin,
)

__all__ = [
    "CallbackEventAdmin",
    "GeneratedImageAdmin",
    "HiDreamProductAdminMixin",
    "HiDreamTaskInline",
    "HiDreamTemplateAdmin",
    "ModelImageTaskAdmin",
]
