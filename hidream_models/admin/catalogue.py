"""Admin of the template catalogue (with the sync button) and of the presets."""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from ..models import HiDreamPreset, HiDreamTemplate
from ..services.scheduling import enqueue_after_commit
from .tasks import ADMIN_CSS, GENERATE_PERMISSION, ReadOnlyAdminMixin


@admin.register(HiDreamTemplate)
class HiDreamTemplateAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The template catalogue synced from HiDream."""

    list_display = (
        "preview_thumb",
        "remote_id",
        "kind",
        "name_en",
        "name_zh",
        "gender",
        "scenes_type",
        "is_active",
        "synced_at",
    )
    list_filter = ("kind", "is_active", "gender", "scenes_type")
    search_fields = ("remote_id", "name_en", "name_zh")
    actions = ("sync_from_hidream",)
    change_list_template = "hidream_models/admin/template_change_list.html"

    def get_urls(self):
        return [
            path(
                "sync/",
                self.admin_site.admin_view(self.sync_view),
                name="hidream_models_hidreamtemplate_sync",
            ),
            *super().get_urls(),
        ]

    def sync_view(self, request):
        """The "Sync from HiDream" button: enqueue a sync (never run it in the request)."""
        if request.method != "POST" or not self.has_generate_permission(request):
            raise PermissionDenied
        self.sync_from_hidream(request, self.get_queryset(request).none())
        return HttpResponseRedirect(reverse("admin:hidream_models_hidreamtemplate_changelist"))

    def changelist_view(self, request, extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "can_sync": self.has_generate_permission(request),
        }
        return super().changelist_view(request, extra_context)

    class Media:
        css = ADMIN_CSS

    @admin.display(description=gettext_lazy("Preview"))
    def preview_thumb(self, template):
        if not template.preview:
            return "–"
        return format_html(
            '<img src="{}" alt="" width="36" height="48" class="hidream-thumb">',
            template.preview.url,
        )

    @admin.action(description=gettext_lazy("Sync templates from HiDream"), permissions=["generate"])
    def sync_from_hidream(self, request, queryset):
        from ..tasks import sync_templates_job

        with transaction.atomic():
            enqueue_after_commit(sync_templates_job)
        self.message_user(request, _("Template sync started in the background."), messages.SUCCESS)

    def has_generate_permission(self, request):
        return request.user.has_perm(GENERATE_PERMISSION)


@admin.register(HiDreamPreset)
class HiDreamPresetAdmin(admin.ModelAdmin):
    """Named generation settings; validated by the same rules as every request."""

    list_display = (
        "name",
        "mode",
        "human_template",
        "scene_template",
        "image_count",
        "is_active",
        "updated_at",
    )
    list_filter = ("mode", "is_active")
    search_fields = ("name", "description", "prompt")
    autocomplete_fields = ()
    fields = (
        "name",
        "description",
        "mode",
        "human_template",
        "scene_template",
        "prompt",
        "image_count",
        "is_active",
    )

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name in ("human_template", "scene_template"):
            kwargs["queryset"] = HiDreamTemplate.objects.filter(
                is_active=True, kind="human" if db_field.name == "human_template" else "scene"
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)
