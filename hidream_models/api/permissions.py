"""API permissions: reading needs the model's view permission, creating and retrying need
``hidream_models.generate``, approving and rejecting need ``hidream_models.review``."""

from __future__ import annotations

from rest_framework.permissions import BasePermission

GENERATE = "hidream_models.generate"
REVIEW = "hidream_models.review"


class HiDreamPermission(BasePermission):
    """Per-action permissions; a view names them in ``required_permissions``.

    ``required_permissions`` maps a viewset action ("list", "create", "approve"...) to the
    permission it needs; actions not listed need the model's view permission.
    """

    def has_permission(self, request, view):
        user = request.user
        if not (user and user.is_authenticated and user.is_active):
            return False
        needed = getattr(view, "required_permissions", {}).get(getattr(view, "action", None))
        if needed is None:
            opts = view.get_queryset().model._meta
            needed = f"{opts.app_label}.view_{opts.model_name}"
        return user.has_perm(needed)
