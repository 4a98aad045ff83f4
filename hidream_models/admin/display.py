"""Small HTML pieces the admin shows: status badges, progress, thumbnails.

Every value that goes into them is escaped (``escape``), so names, prompts and error texts
show as text.
"""

from __future__ import annotations

from dataclasses import dataclass

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


def task_progress(task: ModelImageTask, pictures: list[PictureSummary]) -> str:
    expected = len(task.sub_task_ids) or task.image_count
    stored = sum(1 for picture in pictures if picture.status == ImageStatus.STORED)
    return _("%(done)s of %(total)s") % {"done": stored, "total": expected}


@dataclass(frozen=True, slots=True)
class PictureSummary:
    """What a list row shows of one picture: its place, status and file name.

    The task list shows up to 4 pictures on each of its 50 rows. Building 200
    ``GeneratedImage`` instances (about 25 fields each) for that cost more than the rest of
    the row, so the list reads these three values with ``values_list`` instead.
    """

    position: int
    status: str
    file_name: str

    @property
    def number(self) -> int:
        return self.position + 1

    @classmethod
    def of(cls, image: GeneratedImage) -> PictureSummary:
        return cls(image.position, image.status, image.file.name or "")


def attach_picture_summaries(tasks) -> None:
    """Set ``task.picture_summaries`` (in position order) on each task: one query in all."""
    by_task: dict = {task.pk: [] for task in tasks}
    if by_task:
        rows = (
            GeneratedImage.objects.filter(task_id__in=list(by_task))
            .order_by("position")
            .values_list("task_id", "position", "status", "file")
        )
        for task_id, position, status, file_name in rows:
            by_task[task_id].append(PictureSummary(position, status, file_name or ""))
    for task in tasks:
        task.picture_summaries = by_task[task.pk]


def thumbnails(pictures: list[PictureSummary], size: int = 48):
    stored = [p for p in pictures if p.status == ImageStatus.STORED and p.file_name]
    if not stored:
        return "–"
    storage = GeneratedImage._meta.get_field("file").storage
    label = _("Generated picture %(n)s")  # translated once per row, not once per picture
    width = size * 3 // 4
    parts = []
    for picture in stored:
        # The storage's own URL (S3 signs them, so once each); no FieldFile per picture.
        url = escape(storage.url(picture.file_name))
        alt = escape(label % {"n": picture.number})
        parts.append(
            f'<a href="{url}" target="_blank" rel="noopener"><img src="{url}" alt="{alt}" '
            f'width="{width}" height="{size}" loading="lazy" class="hidream-thumb"></a>'
        )
    # Built by hand rather than with format_html_join: this runs for every picture on the
    # task list, and every value above is escaped.
    return mark_safe("".join(parts))  # noqa: S308
