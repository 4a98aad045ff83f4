"""Creating model-image tasks: from products (admin, API, Python) or from a bare image."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.db import transaction
from django.db.models import Count, Model, Q
from django.db.models.fields.files import FieldFile
from django.utils.translation import gettext as _

from ..exceptions import HiDreamValidationError
from ..files import VerifiedUpload, stored_uploads
from ..models import GenerationMode, ModelImageTask, TaskStatus
from ..rules import ModelImageOptionsSerializer, flatten_errors
from .scheduling import enqueue_after_commit

logger = logging.getLogger(__name__)

ImageGetter = Callable[[Model], Any]


@dataclass(frozen=True)
class GenerationOptions:
    """What to generate: a template pair or a prompt, and how many pictures (1–4)."""

    mode: str
    image_count: int = 1
    human_template_id: str = ""
    scene_template_id: str = ""
    custom_human_template: bool = False
    prompt: str = ""

    @classmethod
    def validated(cls, data: dict[str, Any]) -> GenerationOptions:
        """Build from request-shaped data (``template`` dict or ``prompt``), checked by the
        same rules the client applies; raises ``HiDreamValidationError``."""
        serializer = ModelImageOptionsSerializer(data=data)
        if not serializer.is_valid():
            raise HiDreamValidationError(flatten_errors(serializer.errors))
        clean = serializer.validated_data
        if clean.get("template"):
            template = clean["template"]
            unknown = unknown_template_errors(
                template["human_template_id"], template["scene_template_id"]
            )
            if unknown:
                raise HiDreamValidationError(unknown)
            return cls(
                mode=GenerationMode.TEMPLATE,
                image_count=clean["image_count"],
                human_template_id=template["human_template_id"],
                scene_template_id=template["scene_template_id"],
                custom_human_template=template.get("custom_human_template", False),
            )
        return cls(
            mode=GenerationMode.PROMPT,
            image_count=clean["image_count"],
            prompt=clean["prompt"].strip(),
        )

    def as_task_fields(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "image_count": self.image_count,
            "human_template_id": self.human_template_id,
            "scene_template_id": self.scene_template_id,
            "custom_human_template": self.custom_human_template,
            "prompt": self.prompt,
        }


def unknown_template_errors(human_template_id: str, scene_template_id: str) -> dict:
    """Errors for template ids the synced catalogue does not offer (empty: all known).

    HiDream refuses an unknown id only after the submit, and a submit costs credits. Once
    ``hidream_sync_templates`` has filled the catalogue of a kind, an id it does not hold, or
    holds as no longer offered, is refused here, naming it. A kind never synced is left to
    HiDream (a shop that has not synced yet can still use the ids it knows). One query a kind.
    """
    from ..models import HiDreamTemplate, TemplateKind

    errors: dict[str, list[str]] = {}
    wanted = (
        (TemplateKind.HUMAN, "template.human_template_id", human_template_id),
        (TemplateKind.SCENE, "template.scene_template_id", scene_template_id),
    )
    for kind, key, remote_id in wanted:
        found = HiDreamTemplate.objects.filter(kind=kind).aggregate(
            synced=Count("pk"), offered=Count("pk", filter=Q(remote_id=remote_id, is_active=True))
        )
        if found["synced"] and not found["offered"]:
            errors[key] = [
                _(
                    "HiDream offers no %(kind)s template “%(id)s” (the synced catalogue does not "
                    "hold it, or holds it as no longer offered): choose one the catalogue lists "
                    "(GET templates/?kind=%(kind)s), or run hidream_sync_templates."
                )
                % {"kind": kind, "id": remote_id}
            ]
    return errors


def estimated_credits(pictures: int) -> float | None:
    """Credits a number of pictures costs per ``HIDREAM_CREDITS_PER_IMAGE`` (None: unknown)."""
    from ..conf import hidream_settings

    per_image = hidream_settings.CREDITS_PER_IMAGE
    return None if per_image is None else round(pictures * per_image, 2)


@dataclass
class CreationReport:
    """The tasks created, and the products skipped with the reason for each."""

    tasks: list[ModelImageTask] = field(default_factory=list)
    skipped: list[tuple[Model, str]] = field(default_factory=list)
    batch: uuid.UUID | None = None

    @property
    def picture_count(self) -> int:
        return sum(task.image_count for task in self.tasks)


def default_image_getter(field_name: str = "image") -> ImageGetter:
    def get(product: Model) -> Any:
        return getattr(product, field_name, None)

    return get


def _storage_name(value: Any) -> str:
    """The storage name of a FieldFile (or a plain name); empty when there is no file."""
    if isinstance(value, FieldFile):
        return value.name or ""
    if isinstance(value, str):
        return value
    return getattr(value, "name", "") or ""


def product_photo(product: Model, photo: Any) -> tuple[str, str]:
    """The storage name of the product's own photo to send, and "" — or "" and why not.

    ``photo`` is what the caller's photo hook found on the product (the admin's
    ``hidream_image_field``, the API's ``HIDREAM_PRODUCT_MODELS`` field). A picture the app
    made (published as the main image, say) is never sent back to HiDream: the publisher's
    ``original_photo`` gives the product's own photo instead, or none, and then the product
    is refused with the reason.
    """
    from ..publishing import original_photo

    name = _storage_name(photo)
    if not name:
        return "", _("it has no image")
    original = _storage_name(original_photo(product, photo))
    if not original:
        return "", _(
            "its image is a picture made with HiDream, and the publisher gives back no "
            "original photo of the product to send instead"
        )
    return original, ""


def create_tasks_for_products(
    products: Iterable[Model],
    options: GenerationOptions,
    *,
    user=None,
    image_getter: ImageGetter | None = None,
    mask: VerifiedUpload | None = None,
    preset=None,
) -> CreationReport:
    """Create one queued task per product that has an image, and enqueue their submission.

    ``mask`` is an upload checked by ``files.verify_upload``; it is stored under a name the
    app makes.

    Rows are written with one ``bulk_create``; submission is enqueued as a single dispatch
    job after commit, so a run over a thousand products stays a handful of queries.
    """
    image_getter = image_getter or default_image_getter()
    report = CreationReport(batch=uuid.uuid4())
    pending: list[ModelImageTask] = []
    content_types: dict[type, ContentType] = {}
    for product in products:
        name, refusal = product_photo(product, image_getter(product))
        if not name:
            report.skipped.append((product, refusal))
            continue
        model = type(product)
        if model not in content_types:
            content_types[model] = ContentType.objects.get_for_model(model)
        pending.append(
            ModelImageTask(
                content_type=content_types[model],
                object_id=str(product.pk),
                product_label=str(product)[:300],
                batch=report.batch,
                source_image=name,
                created_by=user if getattr(user, "is_authenticated", False) else None,
                preset=preset,
                **options.as_task_fields(),
            )
        )
    with stored_uploads() as store, transaction.atomic():
        if mask is not None and pending:
            # One uploaded mask is only offered for a single product (see the admin form).
            mask_name = store(mask, "masks")
            for task in pending:
                task.mask = mask_name
        report.tasks = ModelImageTask.objects.bulk_create(pending)
        enqueue_submissions([task.pk for task in report.tasks])
    return report


def create_task_for_image(
    options: GenerationOptions,
    *,
    image_name: str = "",
    image_url: str = "",
    product: Model | None = None,
    user=None,
    mask_name: str = "",
    preset=None,
) -> ModelImageTask:
    """Create one task for an image already in storage (``image_name``) or at a URL.

    With a ``product``, ``image_name`` is its photo as a hook found it: a picture the app
    made is replaced by the product's own photo (``product_photo``), or refused with
    ``HiDreamValidationError`` on ``product``.
    """
    if bool(image_name) == bool(image_url):
        raise ValueError("give exactly one of image_name and image_url")
    if product is not None and image_name:
        image_name, refusal = product_photo(product, image_name)
        if refusal:
            raise HiDreamValidationError({"product": [refusal]})
    fields: dict[str, Any] = {}
    if product is not None:
        fields["content_type"] = ContentType.objects.get_for_model(type(product))
        fields["object_id"] = str(product.pk)
        fields["product_label"] = str(product)[:300]
    with transaction.atomic():
        task = ModelImageTask.objects.create(
            source_image=image_name,
            source_url=image_url,
            mask=mask_name,
            created_by=user if getattr(user, "is_authenticated", False) else None,
            preset=preset,
            **fields,
            **options.as_task_fields(),
        )
        enqueue_submissions([task.pk])
    return task


def enqueue_submissions(task_ids: list) -> None:
    """Enqueue the submission of these queued tasks after commit (one job for the lot)."""
    if not task_ids:
        return
    from ..tasks import dispatch_submissions

    enqueue_after_commit(dispatch_submissions, [str(pk) for pk in task_ids])


def copy_for_retry(task: ModelImageTask, user=None) -> ModelImageTask:
    """A new queued task with the same product, image and options (a retry is a new task)."""
    with transaction.atomic():
        clone = ModelImageTask.objects.create(
            content_type=task.content_type,
            object_id=task.object_id,
            product_label=task.product_label,
            mode=task.mode,
            prompt=task.prompt,
            human_template_id=task.human_template_id,
            scene_template_id=task.scene_template_id,
            custom_human_template=task.custom_human_template,
            image_count=task.image_count,
            mask=task.mask.name,
            source_image=task.source_image.name,
            source_url=task.source_url,
            created_by=user if getattr(user, "is_authenticated", False) else task.created_by,
            retry_of=task,
            preset=task.preset,
            status=TaskStatus.QUEUED,
        )
        enqueue_submissions([clone.pk])
    return clone
