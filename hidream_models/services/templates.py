"""Syncing HiDream's human and scene templates into the local catalogue.

The generate form and the API read templates from the database, never from HiDream inside a
web request. A sync fetches every page, upserts by (kind, remote id), keeps every field HiDream
sent, copies preview images into the shop's storage, and deactivates (never deletes) templates
HiDream no longer lists, because old tasks still name them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone

from ..downloads import download_image
from ..exceptions import HiDreamError
from ..files import preview_name, save_replacing
from ..models import HiDreamTemplate, TemplateKind
from .clients import get_client

logger = logging.getLogger(__name__)

TEXT_FIELDS = {
    "name_en": "name_en",
    "name_zh": "name_zh",
    "gender": "gender",
    "scenes_type": "scenes_type",
    "region": "region",
}


@dataclass
class TemplateSyncReport:
    """What a sync did, per kind."""

    created: int = 0
    updated: int = 0
    deactivated: int = 0
    previews: int = 0
    preview_errors: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        text = (
            f"{self.created} new, {self.updated} updated, {self.deactivated} deactivated, "
            f"{self.previews} previews stored"
        )
        if self.preview_errors:
            text += f", {len(self.preview_errors)} previews failed"
        return text


def sync_templates(
    kinds: tuple[str, ...] = (TemplateKind.HUMAN, TemplateKind.SCENE), *, with_previews: bool = True
) -> TemplateSyncReport:
    """Fetch all templates of ``kinds`` from HiDream and update the catalogue."""
    report = TemplateSyncReport()
    with get_client() as client:
        fetched = {kind: client.list_templates(kind) for kind in kinds}
    now = timezone.now()
    for kind, items in fetched.items():
        seen: set[str] = set()
        for item in items:
            remote_id = str(item.get("id") or "").strip()
            if not remote_id or remote_id in seen:
                continue
            seen.add(remote_id)
            defaults = {
                model_field: str(item.get(key) or "")[:200]
                for key, model_field in TEXT_FIELDS.items()
            }
            defaults.update(
                remote_preview_url=str(item.get("show_image") or "")[:2000],
                extra=item,
                is_active=True,
                synced_at=now,
            )
            template, created = HiDreamTemplate.objects.update_or_create(
                kind=kind, remote_id=remote_id, defaults=defaults
            )
            report.created += created
            report.updated += not created
            if with_previews and template.remote_preview_url:
                _store_preview(template, report)
        with transaction.atomic():
            report.deactivated += (
                HiDreamTemplate.objects.filter(kind=kind, is_active=True)
                .exclude(remote_id__in=seen)
                .update(is_active=False)
            )
    return report


def _store_preview(template: HiDreamTemplate, report: TemplateSyncReport) -> None:
    url = template.remote_preview_url
    if "?" not in url:
        url += "?width=512"  # HiDream serves resized previews (API-REFERENCE §4)
    try:
        downloaded = download_image(url)
    except HiDreamError as exc:
        report.preview_errors.append(f"{template.kind} {template.remote_id}: {exc}")
        logger.warning("Preview of template %s not stored: %s", template.remote_id, exc)
        return
    name = preview_name(template.kind, template.remote_id, downloaded.checked.extension)
    with downloaded.file:
        saved = save_replacing(name, downloaded.file)
    HiDreamTemplate.objects.filter(pk=template.pk).update(preview=saved)
    report.previews += 1
