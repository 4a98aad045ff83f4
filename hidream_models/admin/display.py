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
    return format_html_join(
        "",
        '<a href="{}" target="_blank" rel="noopener"><img src="{}" alt="{}" width="{}" '
        'height="{}" loading="lazy" class="hidream-thumb"></a>',
        (
            (
                image.file.url,
                image.file.url,
                _("Generated picture %(n)s") % {"n": image.number},
                size * 3 // 4,
                size,
            )
            for image in stored
        ),
    )


def large_pictures(images: list[GeneratedImage]):
    """The pictures of a task at a size a person can judge, with status and failure reason."""
    if not images:
        return _("No pictures yet.")
    cards = []
    for image in images:
        if image.status == ImageStatus.STORED and image.file:
            body = format_html(
                '<a href="{}" target="_blank" rel="noopener"><img src="{}" alt="{}" '
                'loading="lazy" class="hidream-large"></a><br>{} × {} px, {} KB',
                image.file.url,
                image.file.url,
                _("Generated picture %(n)s") % {"n": image.number},
                image.width,
                image.height,
                (image.bytes or 0) // 1024,
            )
        else:
            body = format_html(
                '<div class="hidream-placeholder">{}</div><p class="hidream-reason">{}</p>',
                _("%(percent)s%% done") % {"percent": round(image.progress * 100)},
                image.failure_reason,
            )
        cards.append(
            format_html(
                '<figure class="hidream-card">{}<figcaption>#{} {} · {}</figcaption></figure>',
                body,
                image.number,
                status_badge(image),
                image.get_review_state_display(),
            )
        )
    return format_html(
        '<div class="hidream-cards">{}</div>', format_html_join("", "{}", ((c,) for c in cards))
    )
