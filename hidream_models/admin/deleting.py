"""Deleting tasks and pictures in the admin without stranding a published picture.

A published picture is on the storefront, and its publication is what restores the product's
own photo: deleting it (or its task) would leave the AI picture there with nothing left to undo
it. So the admin's delete page and its "Delete selected" action list every published picture
as a reason the deletion cannot happen (Django's "protected objects"), and the action
"Unpublish and delete" does both, after a confirmation page, one task or picture at a time,
all or nothing each. It needs the delete permission of the rows and the review permission
(as "Unpublish" does); unpublishing also needs the product model's change permission
(``services.permissions``). The files the app made are deleted after the commit (``signals``).
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.exceptions import PermissionDenied
from django.db.models import ProtectedError
from django.template.response import TemplateResponse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from ..models import GeneratedImage
from ..services import HiDreamActionRefused
from ..services.publishing import unpublish_and_delete
from .review import can_review


def published_pictures(model, objs) -> list[GeneratedImage]:
    """The published pictures among ``objs`` (pictures) or of them (tasks)."""
    keys = [obj.pk for obj in objs]
    pictures = GeneratedImage.objects.exclude(published_as="").select_related("task")
    if model is GeneratedImage:
        pictures = pictures.filter(pk__in=keys)
    else:
        pictures = pictures.filter(task_id__in=keys)
    return list(pictures.order_by("task_id", "position"))


def why_not_deleted(image: GeneratedImage) -> str:
    """Why a published picture stops a deletion, and what to do instead."""
    return _(
        "Picture #%(n)s of “%(product)s” is published (%(target)s): unpublish it first, or "
        "use the action “Unpublish and delete”."
    ) % {
        "n": image.number,
        "product": image.task.product_label or image.task_id,
        "target": image.get_published_as_display(),
    }


class UnpublishBeforeDeleteMixin:
    """For the task and picture admins: no deletion strands a published picture."""

    unpublish_delete_template = "hidream_models/admin/unpublish_and_delete.html"

    def has_review_permission(self, request) -> bool:
        return can_review(request)

    def has_unpublish_delete_permission(self, request) -> bool:
        """Both (an action's ``permissions`` would ask for either)."""
        return self.has_delete_permission(request) and can_review(request)

    def get_deleted_objects(self, objs, request):
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        reasons = [why_not_deleted(image) for image in published_pictures(self.model, objs)]
        return deleted, counts, perms_needed, [*protected, *reasons]

    @admin.action(
        description=gettext_lazy("Unpublish and delete"), permissions=["unpublish_delete"]
    )
    def unpublish_and_delete(self, request, queryset):
        chosen = list(queryset)
        if request.POST.get("confirm_unpublish_delete") != "yes":
            context = {
                **self.admin_site.each_context(request),
                "title": _("Unpublish and delete?"),
                "opts": self.opts,
                "objects": chosen,
                "published": published_pictures(self.model, chosen),
                "action_checkbox_name": ACTION_CHECKBOX_NAME,
            }
            return TemplateResponse(request, self.unpublish_delete_template, context)
        deleted = []
        for obj in chosen:
            try:
                unpublish_and_delete(obj, user=request.user)
            except (HiDreamActionRefused, PermissionDenied, ProtectedError) as exc:
                reason = exc.args[0] if isinstance(exc, ProtectedError) else exc
                self.message_user(
                    request,
                    _("Not deleted: “%(object)s”. %(reason)s") % {"object": obj, "reason": reason},
                    messages.ERROR,
                )
            else:
                deleted.append(obj)
        if deleted:
            self.log_deletions(request, deleted)
            self.message_user(
                request,
                ngettext(
                    "%(n)s row unpublished where needed and deleted.",
                    "%(n)s rows unpublished where needed and deleted.",
                    len(deleted),
                )
                % {"n": len(deleted)},
                messages.SUCCESS,
            )
        return None
