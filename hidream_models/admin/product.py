"""``HiDreamProductAdminMixin``: the "Generate model images with HiDream" action for any
product ModelAdmin, its intermediate page, and a panel of the product's tasks.

The action is shown to, and usable by, users with ``hidream_models.generate`` only. It renders
a confirm page in the admin layout; the page posts to the mixin's own URL, which checks the
permission again, takes ids only from the ModelAdmin's own queryset (and refuses the whole run
if any id is not in it), creates the tasks in one bulk insert, enqueues their submission,
writes admin log entries and redirects to the task list filtered to the new tasks.

Usage::

    @admin.register(Product)
    class ProductAdmin(HiDreamProductAdminMixin, admin.ModelAdmin):
        hidream_image_field = "image"   # or a method name: def photo(self, obj): ...
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.contenttypes.admin import GenericTabularInline
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models.fields.files import FieldFile
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from ..conf import hidream_settings
from ..forms import GenerateModelImagesForm
from ..models import ModelImageTask
from ..services import create_tasks_for_products, estimated_credits
from . import display
from .compat import parent_actions

GENERATE_PERMISSION = "hidream_models.generate"


class HiDreamTaskInline(GenericTabularInline):
    """Read-only list of a product's HiDream tasks, with their pictures."""

    model = ModelImageTask
    ct_field = "content_type"
    ct_fk_field = "object_id"
    extra = 0
    can_delete = False
    show_change_link = True
    fields = ("created_at", "status_badge", "progress", "pictures", "mode", "created_by")
    readonly_fields = fields
    verbose_name_plural = gettext_lazy("HiDream model images")
    ordering = ("-created_at",)

    class Media:
        css = {"all": ("hidream_models/admin.css",)}

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("created_by").prefetch_related("images")

    @admin.display(description=gettext_lazy("Status"))
    def status_badge(self, task):
        return display.status_badge(task)

    @admin.display(description=gettext_lazy("Pictures"))
    def progress(self, task):
        return display.task_progress(task, self._pictures(task))

    @admin.display(description=gettext_lazy("Thumbnails"))
    def pictures(self, task):
        return display.thumbnails(self._pictures(task), size=64)

    @staticmethod
    def _pictures(task):
        return [display.PictureSummary.of(image) for image in task.images.all()]


class HiDreamProductAdminMixin:
    """Adds HiDream generation to a product ModelAdmin (see the module docstring)."""

    #: A file field name on the product, or the name of a ModelAdmin method returning a file.
    hidream_image_field = "image"
    #: Show the product's tasks and pictures on its change page.
    hidream_show_tasks_inline = True

    # -- permissions and image lookup ---------------------------------------------------

    def has_hidream_generate_permission(self, request) -> bool:
        """The app's generate permission, and what the product changelist (where the action
        lives) requires: this ModelAdmin's view (or change) permission."""
        return (
            request.user.is_active
            and request.user.has_perm(GENERATE_PERMISSION)
            and self.has_view_permission(request)
        )

    def get_hidream_image(self, product):
        """The product's image file (a FieldFile or a storage name), or None."""
        method = getattr(self, self.hidream_image_field, None)
        if callable(method):
            return method(product)
        value = getattr(product, self.hidream_image_field, None)
        if isinstance(value, FieldFile) and not value:
            return None
        return value

    # -- admin hooks --------------------------------------------------------------------

    def get_actions(self, request, action_location=None):
        actions = parent_actions(super(), request, action_location)
        on_list = action_location is None or getattr(action_location, "name", "") == "CHANGE_LIST"
        if on_list and self.has_hidream_generate_permission(request):
            actions["generate_model_images"] = (
                HiDreamProductAdminMixin.generate_model_images,
                "generate_model_images",
                gettext_lazy("Generate model images with HiDream"),
            )
        return actions

    def get_inlines(self, request, obj):
        inlines = list(super().get_inlines(request, obj))
        if (
            obj is not None
            and self.hidream_show_tasks_inline
            and request.user.has_perm("hidream_models.view_modelimagetask")
        ):
            inlines.append(HiDreamTaskInline)
        return inlines

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                "hidream-generate/",
                self.admin_site.admin_view(self.hidream_generate_view),
                name="{}_{}_hidream_generate".format(*info),
            ),
            *super().get_urls(),
        ]

    # -- the action and its page ---------------------------------------------------------

    def generate_model_images(self, request, queryset):
        """Admin action: show the generate page for the selected products."""
        if not self.has_hidream_generate_permission(request):
            raise PermissionDenied
        products = list(queryset)
        form = GenerateModelImagesForm(product_count=len(products))
        return self._render_generate_page(request, products, form)

    def hidream_generate_view(self, request):
        """The confirm URL the generate page posts to."""
        if not self.has_hidream_generate_permission(request):
            raise PermissionDenied
        changelist = reverse(
            f"{self.admin_site.name}:{self.opts.app_label}_{self.opts.model_name}_changelist"
        )
        if request.method != "POST":
            return HttpResponseRedirect(changelist)
        # One comma-joined field (see the template); repeated fields are accepted too.
        ids = [pk for value in request.POST.getlist("ids") for pk in value.split(",")]
        products = self._selected_products(request, ids)
        if products is None:
            self.message_user(
                request,
                _(
                    "Some selected products do not exist or are not yours to change; nothing "
                    "was generated. Select the products again."
                ),
                messages.ERROR,
            )
            return HttpResponseRedirect(changelist)
        form = GenerateModelImagesForm(request.POST, request.FILES, product_count=len(products))
        if not form.is_valid():
            return self._render_generate_page(request, products, form)
        report = create_tasks_for_products(
            products,
            form.options,
            user=request.user,
            image_getter=self.get_hidream_image,
            mask=form.cleaned_data.get("mask"),
            preset=form.preset,
        )
        if report.tasks:
            skipped = {product for product, _reason in report.skipped}
            started = [p for p in products if p not in skipped]
            LogEntry.objects.log_actions(
                request.user.pk,
                started,
                CHANGE,
                change_message=_("Started HiDream model images: %(n)s pictures each.")
                % {"n": form.options.image_count},
            )
            self.message_user(
                request,
                _("%(tasks)s products sent to HiDream: %(pictures)s pictures on the way.")
                % {"tasks": len(report.tasks), "pictures": report.picture_count},
                messages.SUCCESS,
            )
        for product, reason in report.skipped:
            self.message_user(
                request,
                _("Skipped “%(product)s”: %(reason)s.") % {"product": product, "reason": reason},
                messages.WARNING,
            )
        if not report.tasks:
            return HttpResponseRedirect(changelist)
        tasks_url = reverse(f"{self.admin_site.name}:hidream_models_modelimagetask_changelist")
        return HttpResponseRedirect(f"{tasks_url}?batch={report.batch}")

    def _selected_products(self, request, ids):
        """The products with these ids in this admin's queryset, or None if any is missing."""
        wanted = {str(pk) for pk in ids if str(pk).strip()}
        if not wanted or len(wanted) > 10_000:
            return None
        try:
            products = list(self.get_queryset(request).filter(pk__in=wanted))
        except (ValueError, TypeError, ValidationError):
            return None
        if {str(p.pk) for p in products} != wanted:
            return None
        return products

    def _render_generate_page(self, request, products, form):
        with_image = [p for p in products if self.get_hidream_image(p)]
        rows = [
            {"product": p, "image": self.get_hidream_image(p), "skipped": p not in with_image}
            for p in products
        ]
        try:
            image_count = int(form["image_count"].value())
        except (TypeError, ValueError):
            image_count = form.fields["image_count"].initial
        context = {
            **self.admin_site.each_context(request),
            "title": _("Generate model images with HiDream"),
            "opts": self.opts,
            "form": form,
            "rows": rows,
            "product_count": len(with_image),
            "image_count": image_count,
            "picture_total": len(with_image) * image_count,
            "credits_per_image": hidream_settings.CREDITS_PER_IMAGE,
            "presets": list(form.fields["preset"].queryset) if "preset" in form.fields else [],
            "credit_total": estimated_credits(len(with_image) * image_count),
            "skipped_count": len(products) - len(with_image),
            "confirm_url": reverse(
                f"{self.admin_site.name}:{self.opts.app_label}_{self.opts.model_name}"
                "_hidream_generate"
            ),
            "media": self.media + form.media,
        }
        return TemplateResponse(request, "hidream_models/admin/generate_model_images.html", context)
