"""Small HTML pieces the admin shows: status badges, progress, thumbnails.

Every value that goes into them is escaped (``escape``), so names, prompts and error texts
show as text.
"""

from __future__ import annotations

from django.utils.html import escape
from django.utils.safestring import mark_safe
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


def status_label(obj: ModelImageTask | GeneratedImage) -> str:
    """The status in words; cheaper than get_status_display(), which builds a dict per call
    (it shows on every row of the task list)."""
    choices = TaskStatus if isinstance(obj, ModelImageTask) else ImageStatus
    try:
        return str(choices(obj.status).label)
    except ValueError:
        return obj.status


def status_badge(obj: ModelImageTask | GeneratedImage):
    return mark_safe(  # noqa: S308 - both parts are escaped here
        f'<span class="hidream-badge hidream-{BADGE_CLASS.get(obj.status, "wait")}">'
        f"{escape(status_label(obj))}</span>"
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
    parts = []
    for image in stored:
        url = escape(image.file.url)  # storage URLs can be costly (S3 signs them): once each
        alt = escape(label % {"n": image.number})
        parts.append(
            f'<a href="{url}" target="_blank" rel="noopener"><img src="{url}" alt="{alt}" '
            f'width="{width}" height="{size}" loading="lazy" class="hidream-thumb"></a>'
        )
    # Built by hand rather than with format_html_join: this runs for every picture on the
    # task list, and every value above is escaped.
    return mark_safe("".join(parts))  # noqa: S308
