"""The app's admin: task, picture, callback and template admins, and the product mixin."""

from .catalogue import HiDreamPresetAdmin, HiDreamTemplateAdmin
from .product import HiDreamProductAdminMixin, HiDreamTaskInline
from .tasks import CallbackEventAdmin, GeneratedImageAdmin, ModelImageTaskAdmin

__all__ = [
    "CallbackEventAdmin",
    "GeneratedImageAdmin",
    "HiDreamPresetAdmin",
    "HiDreamProductAdminMixin",
    "HiDreamTaskInline",
    "HiDreamTemplateAdmin",
    "ModelImageTaskAdmin",
]
