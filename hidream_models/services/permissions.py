"""The shop's own permissions on its product models, which the app's never stand in for.

The app's permissions (``hidream_models.generate``, ``.review``) say who may spend credits
and review pictures; what a person may do *to a product* is the shop's business, decided by
the product model's own permissions, as its admin decides them: ``view`` (or ``change``,
which implies it, as in the Django admin) to generate pictures of a product, ``change`` to
put a picture on it or take one off. The admin, the API and the services all ask here.

``user=None`` is the shop's own code (a signal receiver, a command): trusted, not checked.
"""

from __future__ import annotations

from django.contrib.auth import get_permission_codename
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied
from django.db.models import Model
from django.utils.translation import gettext as _

VIEW = "view"
CHANGE = "change"


def has_product_permission(user, model: type[Model], action: str) -> bool:
    """Whether ``user`` may ``action`` (``VIEW`` or ``CHANGE``) products of ``model``."""
    if user is None:
        return True
    if not getattr(user, "is_active", False):
        return False
    opts = model._meta
    actions = (VIEW, CHANGE) if action == VIEW else (action,)
    return any(
        user.has_perm(f"{opts.app_label}.{get_permission_codename(each, opts)}") for each in actions
    )


def require_product_permission(user, model: type[Model], action: str) -> None:
    """Raise Django's ``PermissionDenied`` (a 403) naming the model and the permission."""
    if has_product_permission(user, model, action):
        return
    opts = model._meta
    label = f"{opts.app_label}.{opts.model_name}"
    if action == VIEW:
        message = _(
            "You may not view %(models)s (%(label)s), so you cannot generate pictures of "
            "them. Ask for the view permission on that model."
        )
    else:
        message = _(
            "You may not change %(models)s (%(label)s), so you cannot put pictures on them "
            "or take them off. Ask for the change permission on that model."
        )
    raise PermissionDenied(message % {"models": opts.verbose_name_plural, "label": label})


def require_task_product_permission(user, task, action: str) -> None:
    """``require_product_permission`` for the product of ``task`` (none: nothing to check)."""
    if user is None or not task.content_type_id:
        return
    model = ContentType.objects.get_for_id(task.content_type_id).model_class()
    if model is not None:  # a product model since removed from the project: nothing to guard
        require_product_permission(user, model, action)
