"""Admin for tasks, pictures, callbacks and templates: what staff watch and act on."""

from __future__ import annotations

import json

from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Sum
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from ..models import (
    FINAL_TASK_STATUSES,
    CallbackEvent,
    CallbackOutcome,
    GeneratedImage,
    ImageStatus,
    ModelImageTask,
    TaskStatus,
)
from ..payloads import printable, read_json
from ..services import (
    HiDreamActionRefused,
    HiDreamAlreadyRetried,
    HiDreamRetryWouldFailAgain,
    estimated_credits,
    refresh_task,
    retry_task,
)
from ..services.callbacks import next_attempt_at
from ..services.permissions import VIEW, require_task_product_permission
from . import display
from .callbacks import CallbackReapplyMixin
from .deleting import UnpublishBeforeDeleteMixin
from .review import HiDreamReviewAdminMixin, ReviewActionsMixin, can_review, review_choices

GENERATE_PERMISSION = "hidream_models.generate"
ADMIN_CSS = {"all": ("hidream_models/admin.css",)}


RETRY_ANYWAY = gettext_lazy("Retry failed tasks anyway, even if the same request failed for good")


class ReadOnlyAdminMixin:
    """Rows written by the app only: viewable, never added or edited by hand."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


def _pretty_body(body: str) -> str:
    """A stored callback body for people: re-indented when it is JSON, as it came otherwise.

    Read with the callbacks' own parser (no NaN, no absurd nesting: a body nested 60,000
    deep is kept as text, not walked), and made ``printable``: a ``\\ud800`` escape in the
    body decodes to a lone surrogate, which no page can encode, so it is written back as
    the escape that carried it.
    """
    try:
        text = json.dumps(read_json(body), ensure_ascii=False, indent=2)
    except ValueError:
        text = body
    return printable(text)


def _raw_block(text: str):
    return format_html('<pre class="hidream-raw" tabindex="0">{}</pre>', text)


class CallbackEventDisplay:
    """How a stored callback is shown, in the task's inline and on its own page: whatever
    came, every page renders (``printable`` text only)."""

    @admin.display(description=gettext_lazy("Body"))
    def pretty_body(self, event):
        text = _pretty_body(event.body)
        limit = getattr(self, "body_limit", None)
        return _raw_block(text[:limit] if limit else text)

    @admin.display(description=CallbackEvent._meta.get_field("error").verbose_name)
    def error_text(self, event):
        return printable(event.error)

    @admin.display(description=CallbackEvent._meta.get_field("headers").verbose_name)
    def headers_text(self, event):
        return _raw_block(printable(json.dumps(event.headers, ensure_ascii=False, indent=2)))

    @admin.display(description=CallbackEvent._meta.get_field("traceback").verbose_name)
    def traceback_text(self, event):
        return _raw_block(printable(event.traceback)) if event.traceback else "–"

    @admin.display(description=gettext_lazy("Next attempt"))
    def next_attempt(self, event):
        """When the sweep tries it again (a ``received`` one that failed before)."""
        if event.outcome != CallbackOutcome.RECEIVED or not event.attempts:
            return "–"
        return next_attempt_at(event.received_at, event.attempts)


class CallbackEventInline(CallbackEventDisplay, ReadOnlyAdminMixin, admin.TabularInline):
    model = CallbackEvent
    extra = 0
    can_delete = False
    fields = ("received_at", "outcome", "attempts", "remote_addr", "error_text", "pretty_body")
    readonly_fields = fields
    verbose_name_plural = gettext_lazy("Callbacks received (raw, read-only)")
    body_limit = 5000  # a task page lists every callback: the start of each is enough


class TaskChangeList(ChangeList):
    """The task list: each page's pictures are read in one light query (no model rows)."""

    def get_results(self, request):
        super().get_results(request)
        display.attach_picture_summaries(self.result_list)


@admin.register(ModelImageTask)
class ModelImageTaskAdmin(UnpublishBeforeDeleteMixin, HiDreamReviewAdminMixin, admin.ModelAdmin):
    """The task list and task page: status, pictures, what was sent, errors, callbacks."""

    change_list_template = "hidream_models/admin/task_change_list.html"
    change_form_template = "hidream_models/admin/task_change_form.html"
    list_display = (
        "product_column",
        "status_badge",
        "progress",
        "thumbnails",
        "created_by",
        "created_at",
    )
    list_filter = ("status", ("created_at", admin.DateFieldListFilter), "created_by")
    search_fields = ("=id", "=remote_task_id", "product_label", "object_id")
    list_select_related = ("created_by",)
    list_per_page = 50
    actions = (
        "refresh_from_hidream",
        "retry_failed_tasks",
        "retry_failed_tasks_anyway",
        "resend_unconfirmed_tasks",
        "unpublish_and_delete",
    )
    inlines = (CallbackEventInline,)
    fieldsets = (
        (None, {"fields": ("product_link", "status_badge", "error_message_plain", "preset")}),
        (
            gettext_lazy("What was sent"),
            {
                "fields": (
                    "mode",
                    "human_template_id",
                    "scene_template_id",
                    "prompt",
                    "image_count",
                    "source_image",
                    "source_url",
                    "source_mode",
                    "source_sha256",
                    "mask",
                    "retry_of",
                )
            },
        ),
        (
            gettext_lazy("HiDream"),
            {
                "classes": ("collapse",),
                "fields": (
                    "remote_task_id",
                    "request_id",
                    "sub_task_ids",
                    "error_code",
                    "attempts",
                    "created_by",
                    "created_at",
                    "submitted_at",
                    "last_callback_at",
                    "last_polled_at",
                    "finished_at",
                    "batch",
                ),
            },
        ),
    )

    def get_readonly_fields(self, request, obj=None):
        # Nothing here is for editing: it is a record of what was sent and received.
        return [field for fieldset in self.fieldsets for field in fieldset[1]["fields"]]

    def save_model(self, request, obj, form, change):
        # Every field is read-only, so "Save" has nothing to write; obj.save() would write
        # the whole row as read when the page opened, status and claim included, over what
        # a worker or callback did since (services/transitions.py moves the state).
        pass

    class Media:
        css = ADMIN_CSS

    def has_add_permission(self, request):
        return False

    def has_generate_permission(self, request):
        return request.user.has_perm(GENERATE_PERMISSION)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        # Every field is read-only: offer no save buttons that would do nothing.
        task = self.get_object(request, object_id)
        extra_context = {
            **(extra_context or {}),
            "show_save": False,
            "show_save_and_continue": False,
            "show_save_and_add_another": False,
            # Whole rows here (the list's prefetch loads only a few columns).
            "hidream_images": list(task.images.order_by("position").all()) if task else [],
            "hidream_review_choices": review_choices() if can_review(request) else None,
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def get_changelist(self, request, **kwargs):
        return TaskChangeList

    # -- columns ----------------------------------------------------------------------

    @admin.display(description=gettext_lazy("Product"), ordering="product_label")
    def product_column(self, task):
        return task.product_label or _("(no product)")

    @admin.display(description=gettext_lazy("Product"))
    def product_link(self, task):
        product = task.product if task.content_type_id else None
        if product is None:
            return task.product_label or _("(no product)")
        opts = product._meta
        from django.urls import NoReverseMatch

        try:
            url = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[product.pk])
        except NoReverseMatch:
            return str(product)
        return format_html('<a href="{}">{}</a>', url, product)

    @admin.display(description=gettext_lazy("Status"), ordering="status")
    def status_badge(self, task):
        return display.status_badge(task)

    @admin.display(description=gettext_lazy("Pictures"))
    def progress(self, task):
        return display.task_progress(task, task.picture_summaries)

    @admin.display(description=gettext_lazy("Thumbnails"))
    def thumbnails(self, task):
        return display.thumbnails(task.picture_summaries)

    @admin.display(description=gettext_lazy("Problem"))
    def error_message_plain(self, task):
        if not task.error_message:
            return "–"
        code = _(" (HiDream code %(code)s)") % {"code": task.error_code} if task.error_code else ""
        return format_html('<p class="hidream-reason">{}{}</p>', task.error_message, code)

    # -- list auto-refresh ------------------------------------------------------------

    def changelist_view(self, request, extra_context=None):
        response = super().changelist_view(request, extra_context)
        context = getattr(response, "context_data", None)
        if context and "cl" in context:
            cl = context["cl"]
            running = any(
                task.status not in FINAL_TASK_STATUSES and task.status != TaskStatus.UNCONFIRMED
                for task in cl.result_list
            )
            context["hidream_refresh_seconds"] = 5 if running else None
            context["hidream_totals"] = self._totals(cl.queryset)
        return response

    @staticmethod
    def _totals(queryset):
        """Tasks, pictures asked for and stored, and credits, for the filtered period."""
        totals = queryset.order_by().aggregate(
            tasks=Count("pk", distinct=True), pictures=Sum("image_count")
        )
        pictures = totals["pictures"] or 0
        stored = GeneratedImage.objects.filter(
            task__in=queryset.order_by().values("pk"), status=ImageStatus.STORED
        ).count()
        return {
            "tasks": totals["tasks"],
            "pictures": pictures,
            "stored": stored,
            "credits": estimated_credits(pictures),
        }

    # -- actions ------------------------------------------------------------------------

    @admin.action(description=gettext_lazy("Refresh from HiDream"), permissions=["generate"])
    def refresh_from_hidream(self, request, queryset):
        done, refused = 0, []
        for task in queryset:
            try:
                refresh_task(task)
                done += 1
            except HiDreamActionRefused as exc:
                refused.append(f"{task.product_label}: {exc}")
        if done:
            self.message_user(
                request,
                ngettext(
                    "Asked HiDream about %(n)s task.", "Asked HiDream about %(n)s tasks.", done
                )
                % {"n": done},
                messages.SUCCESS,
            )
        for text in refused[:10]:
            self.message_user(request, text, messages.WARNING)

    @admin.action(description=RETRY_ANYWAY, permissions=["generate"])
    def retry_failed_tasks_anyway(self, request, queryset):
        """The same, for tasks whose failure a resend cannot mend: a knowing choice."""
        return self.retry_failed_tasks(request, queryset, anyway=True)

    def _say_already_retried(self, request, exc: HiDreamAlreadyRetried) -> None:
        """A warning linking the retry that exists: nothing was sent again."""
        url = reverse(
            f"{self.admin_site.name}:hidream_models_modelimagetask_change", args=[exc.retry.pk]
        )
        self.message_user(
            request,
            format_html(
                _(
                    '“{task}” was retried already, as <a href="{url}">task {retry}</a> '
                    "({status}); nothing was sent again."
                ),
                task=exc.task,
                url=url,
                retry=exc.retry.pk,
                status=exc.retry.get_status_display(),
            ),
            messages.WARNING,
        )

    @admin.action(description=gettext_lazy("Retry failed tasks"), permissions=["generate"])
    def retry_failed_tasks(self, request, queryset, *, anyway: bool = False):
        retried, unconfirmed, refused = 0, 0, 0
        for task in queryset:
            if task.status == TaskStatus.UNCONFIRMED:
                unconfirmed += 1
                continue
            try:
                retry_task(task, user=request.user, anyway=anyway)
                retried += 1
            except HiDreamAlreadyRetried as exc:
                self._say_already_retried(request, exc)
            except HiDreamRetryWouldFailAgain as exc:
                self.message_user(
                    request,
                    _("Not retried: “%(task)s”. %(reason)s Use “%(action)s” to send it anyway.")
                    % {"task": task, "reason": exc, "action": RETRY_ANYWAY},
                    messages.WARNING,
                )
            except (HiDreamActionRefused, PermissionDenied):
                refused += 1
        if retried:
            self.message_user(
                request,
                ngettext(
                    "%(n)s task sent again as a new task.",
                    "%(n)s tasks sent again as new tasks.",
                    retried,
                )
                % {"n": retried},
                messages.SUCCESS,
            )
        if unconfirmed:
            self.message_user(
                request,
                _(
                    "%(n)s unconfirmed tasks were not resent: HiDream may already be generating "
                    "them. Use “Resend unconfirmed tasks” to send them again knowingly."
                )
                % {"n": unconfirmed},
                messages.WARNING,
            )
        if refused:
            self.message_user(
                request,
                _("%(n)s tasks were skipped: only failed or partly failed tasks are retried.")
                % {"n": refused},
                messages.WARNING,
            )

    @admin.action(
        description=gettext_lazy("Resend unconfirmed tasks (may bill twice)"),
        permissions=["generate"],
    )
    def resend_unconfirmed_tasks(self, request, queryset):
        tasks = [task for task in queryset if task.status == TaskStatus.UNCONFIRMED]
        if not tasks:
            self.message_user(
                request, _("None of the selected tasks is unconfirmed."), messages.WARNING
            )
            return None
        if request.POST.get("confirm_resend") == "yes":
            for task in tasks:  # all or none: every product's permission first (a 403 if not)
                require_task_product_permission(request.user, task, VIEW)
            sent = []
            for task in tasks:
                try:
                    sent.append(retry_task(task, user=request.user, resend_unconfirmed=True))
                except HiDreamAlreadyRetried as exc:  # the page submitted twice, or two people
                    self._say_already_retried(request, exc)
            tasks = sent
            if not tasks:
                return None
            self.message_user(
                request,
                ngettext(
                    "%(n)s unconfirmed task sent again.",
                    "%(n)s unconfirmed tasks sent again.",
                    len(tasks),
                )
                % {"n": len(tasks)},
                messages.SUCCESS,
            )
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": _("Resend unconfirmed tasks?"),
            "opts": self.opts,
            "tasks": tasks,
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "hidream_models/admin/resend_unconfirmed.html", context)


@admin.register(GeneratedImage)
class GeneratedImageAdmin(
    UnpublishBeforeDeleteMixin, ReviewActionsMixin, ReadOnlyAdminMixin, admin.ModelAdmin
):
    """Every generated picture, filterable by status, review state and publication."""

    list_display = (
        "__str__",
        "status_badge",
        "review_state",
        "published_as",
        "thumbnail",
        "width",
        "height",
        "stored_at",
    )
    list_filter = ("status", "review_state", "published_as")
    actions = (
        "approve_pictures",
        "approve_to_gallery",
        "approve_as_main",
        "reject_pictures",
        "unpublish_pictures",
        "unpublish_and_delete",
    )
    search_fields = ("=sub_task_id", "task__product_label")
    list_select_related = ("task",)

    class Media:
        css = ADMIN_CSS

    @admin.display(description=gettext_lazy("Status"), ordering="status")
    def status_badge(self, image):
        return display.status_badge(image)

    @admin.display(description=gettext_lazy("Picture"))
    def thumbnail(self, image):
        return display.thumbnails([display.PictureSummary.of(image)])


@admin.register(CallbackEvent)
class CallbackEventAdmin(
    CallbackReapplyMixin, CallbackEventDisplay, ReadOnlyAdminMixin, admin.ModelAdmin
):
    """The callback log, read-only; staff may apply a callback again (``CallbackReapplyMixin``)."""

    list_display = ("received_at", "task", "outcome", "attempts", "remote_addr")
    list_filter = ("outcome",)
    search_fields = ("=task__id", "=task__remote_task_id")
    list_select_related = ("task",)
    # The stored text through CallbackEventDisplay, never the bare fields: Django would
    # show them as they are, and a page that cannot be encoded is a 500.
    fields = (
        "task",
        "received_at",
        "remote_addr",
        "outcome",
        "attempts",
        "next_attempt",
        "error_text",
        "traceback_text",  # to those who may apply it again (CallbackReapplyMixin)
        "headers_text",
        "pretty_body",
    )
    readonly_fields = fields

    class Media:
        css = ADMIN_CSS
