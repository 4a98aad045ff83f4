"""Small HTML pieces the admin shows: status badges, progress, thumbnails.

Everything goes through ``format_html``/``format_html_join`` so names, prompts and error
texts are escaped.
"""

from __future__ import annotations

from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext as _

from ..models import GeneratedImage, ImageStatus, ModelImageTask, TaskStatus

BADGE_CLASS = {
    TaskStatus.QUEUED: "wait",
    TaskStatus.SUBMITTING: "wait",
    TaskStatus.SUBMITTED: "run",
    TaskStatus.PROCESSING: "run",
    TaskStatus.UNCONFIRMED: "warn",
    TaskStatus.SUCCEEDED: "ok",
    TaskStatus.PARTIAL: "warn",
    TaskStatus.FAILED: "bad",
    ImageStatus.PENDING: "run",
    ImageStatus.DOWNLOADING: "run",
    ImageStatus.STORED: "ok",
    ImageStatus.FAILED: "bad",
}


def status_badge(obj: ModelImageTask | GeneratedImage):
    return format_html(
        '<span class="hidream-badge hidream-{}">{}</span>',
        BADGE_CLASS.get(obj.status, "wait"),
        obj.get_status_display(),
    )


def task_progress(task: ModelImageTask, images: list[GeneratedImage]) -> str:
    expected = len(task.sub_task_ids) or task.image_count
    stored = sum(1 for image in images if image.status == ImageStatus.STORED)
    return _("%(done)s of %(total)s") % {"done": stored, "total": expected}


def thumbnails(images: list[GeneratedImage], size: int = 48):
    stored = [image for image in images if image.status == ImageStatus.STORED and image.file]
    if not stored:
        return "–"
    label = _("Generated picture %(n)s")  # translated once per row, not once per picture
    width = size * 3 // 4
    rows = []
    for image in stored:
        url = image.file.url  # storage URLs can be costly (S3 signs them): build each once
        rows.append((url, url, label % {"n": image.number}, width, size))
    return format_html_join(
        "",
        '<a href="{}" target="_blank" rel="noopener"><img src="{}" alt="{}" width="{}" '
        'height="{}" loading="lazy" class="hidream-thumb"></a>',
        rows,
    )
