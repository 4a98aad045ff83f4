"""Reviewing pictures in the admin: buttons beside each picture, a review queue page, and
actions on the picture list. All of it needs ``hidream_models.review``."""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from ..models import GeneratedImage, ImageStatus, PublishTarget, ReviewState
from ..publishing import get_publisher
from ..services import (
    HiDreamActionRefused,
    approve_image,
    reject_image,
    unpublish_image,
)
from .compat import parent_actions

REVIEW_PERMISSION = "hidream_models.review"

#: decision name → (function, publish target)
DECISIONS = {
    "approve": (approve_image, None),
    "approve_gallery": (approve_image, PublishTarget.GALLERY),
    "approve_main": (approve_image, PublishTarget.MAIN),
    "reject": (reject_image, None),
    "unpublish": (unpublish_image, None),
}


def can_review(request) -> bool:
    return request.user.is_active and request.user.has_perm(REVIEW_PERMISSION)


def decide(image: GeneratedImage, decision: str, user) -> GeneratedImage:
    """Apply one review decision; raises HiDreamActionRefused with a reason for staff."""
    if decision not in DECISIONS:
        raise HiDreamActionRefused(_("Unknown decision “%(d)s”.") % {"d": decision})
    function, target = DECISIONS[decision]
    if target:
        return function(image, user=user, publish=target)
    return function(image, user=user)


def review_choices() -> list[tuple[str, str]]:
    """The decisions offered in buttons: publishing ones only with a publisher."""
    choices = [("approve", _("Approve"))]
    if get_publisher() is not None:
        choices += [
            ("approve_gallery", _("Approve + add to gallery")),
            ("approve_main", _("Approve + make main image")),
        ]
    choices.append(("reject", _("Reject")))
    return choices


class HiDreamReviewAdminMixin:
    """For the task admin: the review queue and the per-picture decision URL."""

    def get_urls(self):
        return [
            path(
                "review/",
                self.admin_site.admin_view(self.review_queue_view),
                name="hidream_models_review_queue",
            ),
            path(
                "images/<int:image_id>/review/",
                self.admin_site.admin_view(self.review_decision_view),
                name="hidream_models_review_decision",
            ),
            *super().get_urls(),
        ]

    def review_decision_view(self, request, image_id):
        if request.method != "POST":
            return HttpResponseRedirect(reverse("admin:hidream_models_review_queue"))
        if not can_review(request):
            raise PermissionDenied
        image = get_object_or_404(GeneratedImage, pk=image_id)
        decision = request.POST.get("decision", "")
        try:
            decide(image, decision, request.user)
        except (HiDreamActionRefused, PermissionDenied) as exc:
            self.message_user(request, str(exc), messages.ERROR)
        else:
            self.message_user(
                request,
                _("Picture #%(n)s of “%(product)s”: %(decision)s.")
                % {
                    "n": image.number,
                    "product": image.task.product_label,
                    "decision": dict(review_choices() + [("unpublish", _("Unpublish"))]).get(
                        decision, decision
                    ),
                },
                messages.SUCCESS,
            )
        next_url = request.POST.get("next", "")
        if not url_has_allowed_host_and_scheme(
            next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        ):
            next_url = reverse("admin:hidream_models_review_queue")
        return HttpResponseRedirect(next_url)

    def review_queue_view(self, request):
        if not can_review(request):
            raise PermissionDenied
        queue = (
            GeneratedImage.objects.filter(
                status=ImageStatus.STORED, review_state=ReviewState.UNREVIEWED
            )
            .select_related("task")
            .order_by("stored_at", "pk")
        )
        page = Paginator(queue, 12).get_page(request.GET.get("page"))
        context = {
            **self.admin_site.each_context(request),
            "title": _("Review generated pictures"),
            "opts": self.opts,
            "page": page,
            "choices": review_choices(),
            "decision_url_name": "admin:hidream_models_review_decision",
            "media": self.media,
        }
        return TemplateResponse(request, "hidream_models/admin/review_queue.html", context)


class ReviewActionsMixin:
    """Actions for the picture list: approve (and publish), reject, unpublish."""

    def has_review_permission(self, request):
        return can_review(request)

    def get_actions(self, request, action_location=None):
        actions = parent_actions(super(), request, action_location)
        if get_publisher() is None:  # nothing to publish with: don't offer it
            for name in ("approve_to_gallery", "approve_as_main", "unpublish_pictures"):
                actions.pop(name, None)
        return actions

    def _decide_all(self, request, queryset, decision):
        done, refused = 0, []
        for image in queryset:
            try:
                decide(image, decision, request.user)
                done += 1
            except (HiDreamActionRefused, PermissionDenied) as exc:
                refused.append(f"#{image.pk}: {exc}")
        if done:
            self.message_user(request, _("%(n)s pictures updated.") % {"n": done}, messages.SUCCESS)
        for text in refused[:10]:
            self.message_user(request, text, messages.WARNING)

    @admin.action(description=gettext_lazy("Approve"), permissions=["review"])
    def approve_pictures(self, request, queryset):
        self._decide_all(request, queryset, "approve")

    @admin.action(
        description=gettext_lazy("Approve and add to the product gallery"), permissions=["review"]
    )
    def approve_to_gallery(self, request, queryset):
        self._decide_all(request, queryset, "approve_gallery")

    @admin.action(
        description=gettext_lazy("Approve and make the main product image"), permissions=["review"]
    )
    def approve_as_main(self, request, queryset):
        self._decide_all(request, queryset, "approve_main")

    @admin.action(description=gettext_lazy("Reject"), permissions=["review"])
    def reject_pictures(self, request, queryset):
        self._decide_all(request, queryset, "reject")

    @admin.action(description=gettext_lazy("Unpublish"), permissions=["review"])
    def unpublish_pictures(self, request, queryset):
        self._decide_all(request, queryset, "unpublish")
