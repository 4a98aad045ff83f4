"""API views: thin DRF viewsets over the services (no HiDream call happens in a request)."""

from __future__ import annotations

import json

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import Prefetch
from django.utils.cache import patch_cache_control
from django.utils.translation import gettext as _
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import OpenApiResponse, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.filters import OrderingFilter
from rest_framework.pagination import PageNumberPagination
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response

from .. import services
from ..conf import hidream_settings
from ..exceptions import HiDreamValidationError
from ..models import GeneratedImage, ModelImageTask
from ..services import GenerationOptions, HiDreamActionRefused, HiDreamAlreadyRetried
from . import idempotency
from .authentication import HiDreamAuthenticationMixin
from .filters import TaskFilter
from .idempotency import IDEMPOTENCY_HEADER
from .parsers import HiDreamJSONParser, PayloadTooLarge, max_body_bytes, too_large
from .permissions import GENERATE, HiDreamPermission
from .references import product_image, resolve_products
from .schema import HiDreamAutoSchema, extend_schema
from .serializers import (
    BulkCreateSerializer,
    BulkResultSerializer,
    TaskCreateSerializer,
    TaskRetrySerializer,
    TaskSerializer,
)
from .throttling import HiDreamCreateThrottle

REFUSED = OpenApiResponse(description="The action does not apply to this object (detail says why).")


class HiDreamPagination(PageNumberPagination):
    """Pages of 50 by default; ``page_size`` up to 200."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


class HiDreamViewSetMixin(HiDreamAuthenticationMixin):
    """What every API view shares: permissions, pagination, the OpenAPI schema class, a 413
    (not a 400 or 500) for bodies over the size limit, and ``Cache-Control: private,
    no-store`` on every reply: tasks and pictures are one shop's private data, which no
    shared cache (a CDN, a company proxy) and no browser disk cache may keep."""

    permission_classes = [HiDreamPermission]
    parser_classes = [HiDreamJSONParser, MultiPartParser, FormParser]
    pagination_class = HiDreamPagination
    schema = HiDreamAutoSchema()
    required_permissions: dict[str, str] = {}
    throttled_actions: frozenset[str] = frozenset()

    def initial(self, request, *args, **kwargs):
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = 0
        if declared > max_body_bytes():
            raise too_large(declared)
        super().initial(request, *args, **kwargs)

    def handle_exception(self, exc):
        if isinstance(exc, RequestDataTooBig):
            # Django's own limit still applies where Django reads the body: the non-file
            # fields of a multipart form, or a body a middleware read first.
            exc = PayloadTooLarge(
                _(
                    "The request body is larger than this server's Django accepts "
                    "(DATA_UPLOAD_MAX_MEMORY_SIZE, %(django)s bytes): send the image as a "
                    "multipart file, or raise that setting to the app's own limit "
                    "(HIDREAM_MAX_UPLOAD_BYTES, %(app)s bytes; JSON bodies up to %(body)s)."
                )
                % {
                    "django": settings.DATA_UPLOAD_MAX_MEMORY_SIZE,
                    "app": hidream_settings.MAX_UPLOAD_BYTES,
                    "body": max_body_bytes(),
                }
            )
        return super().handle_exception(exc)

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        patch_cache_control(response, private=True, no_store=True)
        return response

    def get_throttles(self):
        if self.action in self.throttled_actions:
            return [HiDreamCreateThrottle()]
        return []


def refused_response(exc: HiDreamActionRefused) -> Response:
    return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)


def _options(data) -> GenerationOptions:
    """The generation options of a validated request; a 400 naming the field for what only
    the services know (a template the synced catalogue does not offer)."""
    if data.get("preset") is not None:
        request = data["preset"].as_request()
        field = "preset"
    else:
        request = {"image_count": data["image_count"]}
        if data.get("template"):
            request["template"] = dict(data["template"])
        else:
            request["prompt"] = data["prompt"]
        field = None
    try:
        return GenerationOptions.validated(request)
    except HiDreamValidationError as exc:
        if field:  # the preset's own options are wrong now (a template no longer offered)
            raise ValidationError({field: [str(exc)]}) from None
        nested: dict = {}
        for key, messages in exc.errors.items():
            head, _dot, rest = key.partition(".")
            target = nested.setdefault(head, {}) if rest else nested
            target[rest or head] = messages
        raise ValidationError(nested) from None


@extend_schema_view(
    list=extend_schema(summary="List model-image tasks"),
    retrieve=extend_schema(summary="A task with its pictures"),
)
class TaskViewSet(
    HiDreamViewSetMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    viewsets.GenericViewSet,
):
    """Model-image tasks: create them for products or images, watch, refresh and retry."""

    serializer_class = TaskSerializer
    filter_backends = [DjangoFilterBackend, OrderingFilter]
    filterset_class = TaskFilter
    ordering_fields = ["created_at", "finished_at", "status"]
    ordering = ["-created_at"]
    required_permissions = {
        "create": GENERATE,
        "bulk": GENERATE,
        "retry": GENERATE,
        "refresh": GENERATE,
    }
    throttled_actions = frozenset({"create", "bulk", "retry"})

    def get_queryset(self):
        return ModelImageTask.objects.select_related("created_by").prefetch_related(
            Prefetch("images", queryset=GeneratedImage.objects.order_by("position"))
        )

    @extend_schema(
        summary="Create a task",
        request={
            "application/json": TaskCreateSerializer,
            "multipart/form-data": TaskCreateSerializer,
        },
        parameters=[IDEMPOTENCY_HEADER],
        responses={201: TaskSerializer, 409: REFUSED, 422: REFUSED},
    )
    def create(self, request, *args, **kwargs):
        return self._idempotent(request, self._create)

    def _idempotent(self, request, work) -> Response:
        """``work()``'s answer, once per Idempotency-Key (``api.idempotency``)."""
        claimed = idempotency.claim(request, idempotency.key_of(request))
        if claimed.replay is not None:
            return self._replay(claimed.replay)
        try:
            # The work and the key's result commit together: a process killed between the
            # two would leave a task made and its key "running" until the key expires.
            with transaction.atomic():
                response = work()
                if status.is_success(response.status_code):
                    result = json.loads(json.dumps(response.data, cls=DjangoJSONEncoder))
                    idempotency.record(claimed.row, response.status_code, {"body": result})
        except BaseException:
            idempotency.release(claimed.row)
            raise
        if not status.is_success(response.status_code):
            idempotency.release(claimed.row)
        return response

    def _replay(self, row) -> Response:
        body = row.result.get("body") or {}
        if self.action in ("create", "retry"):  # a task: as it is now, as a GET shows it
            task = self.get_queryset().filter(pk=body.get("id")).first()
            if task is not None:
                return self._created(task, replayed=True, status_code=row.status_code)
        return Response(body, status=row.status_code, headers={idempotency.REPLAYED_HEADER: "true"})

    def _create(self) -> Response:
        request = self.request
        serializer = TaskCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        options = _options(data)
        if data.get("mask") and data["mask"][0] == "url":
            return Response(
                {"mask": [_("Send the mask as a file upload or base64, not as a URL.")]},
                status=status.HTTP_400_BAD_REQUEST,
            )
        # Everything that can refuse the request comes first: a file is stored only for a
        # task that is then made (and deleted again if making it fails).
        source = self._source(request, data)
        if isinstance(source, Response):
            return source
        with services.stored_uploads() as store, transaction.atomic():
            mask_name = store(data["mask"][1], "masks") if data.get("mask") else ""
            if source.get("upload") is not None:
                source = {"image_name": store(source.pop("upload"), "sources")}
            task = services.create_task_for_image(
                options,
                user=request.user,
                mask_name=mask_name,
                preset=data.get("preset"),
                **source,
            )
        return self._created(task)

    def _source(self, request, data) -> dict | Response:
        """What the task is made from (a product's stored photo, a URL or an upload still to
        store), or the refusal: 400 naming the problem, 403 without the product permission."""
        if data.get("product"):
            found, errors = resolve_products([data["product"]], request.user)
            if errors:
                return Response({"product": errors[0]}, status=status.HTTP_400_BAD_REQUEST)
            product = found[0]
            name, why_not = services.product_photo(product, product_image(product))
            if not name:
                return Response(
                    {"product": [_cannot_send(why_not)]}, status=status.HTTP_400_BAD_REQUEST
                )
            return {"image_name": name, "product": product}
        kind, value = data["image"]
        return {"image_url": value} if kind == "url" else {"upload": value}

    def _created(self, task, *, replayed=False, status_code=status.HTTP_201_CREATED):
        task = self.get_queryset().get(pk=task.pk)
        headers = {"Location": self.reverse_action("detail", args=[task.pk])}
        if replayed:
            headers[idempotency.REPLAYED_HEADER] = "true"
        return Response(
            TaskSerializer(task, context=self.get_serializer_context()).data,
            status=status_code,
            headers=headers,
        )

    @extend_schema(
        summary="Create tasks for many products (all or nothing)",
        request=BulkCreateSerializer,
        parameters=[IDEMPOTENCY_HEADER],
        responses={201: BulkResultSerializer, 200: BulkResultSerializer},
    )
    @action(detail=False, methods=["post"])
    def bulk(self, request):
        return self._idempotent(request, self._bulk)

    def _bulk(self) -> Response:
        request = self.request
        serializer = BulkCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        found, errors = resolve_products(data["products"], request.user)
        for index, product in found.items():
            name, why_not = services.product_photo(product, product_image(product))
            if not name:
                errors.setdefault(index, []).append(_cannot_send(why_not))
        duplicates = _duplicate_indexes(data["products"])
        for index in duplicates:
            errors.setdefault(index, []).append(_("This product is listed twice."))
        if errors:
            return Response(
                {"products": {str(index): messages for index, messages in sorted(errors.items())}},
                status=status.HTTP_400_BAD_REQUEST,
            )
        products = [found[index] for index in range(len(data["products"]))]
        options = _options(data)
        if data["dry_run"]:
            pictures = len(products) * options.image_count
            body = {
                "batch": None,
                "ids": [],
                "pictures": pictures,
                "credits": services.estimated_credits(pictures),
                "dry_run": True,
            }
            return Response(BulkResultSerializer(body).data, status=status.HTTP_200_OK)
        report = services.create_tasks_for_products(
            products,
            options,
            user=request.user,
            image_getter=product_image,
            preset=data.get("preset"),
        )
        body = {
            "batch": report.batch,
            "ids": [task.pk for task in report.tasks],
            "pictures": report.picture_count,
            "credits": services.estimated_credits(report.picture_count),
            "dry_run": False,
        }
        return Response(BulkResultSerializer(body).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Ask HiDream for this task's result now (in the background)",
        request=None,
        responses={202: OpenApiResponse(description="A poll was queued."), 409: REFUSED},
    )
    @action(detail=True, methods=["post"])
    def refresh(self, request, pk=None):
        try:
            services.refresh_task(self.get_object())
        except HiDreamActionRefused as exc:
            return refused_response(exc)
        return Response(
            {"detail": _("A poll of HiDream was queued.")}, status=status.HTTP_202_ACCEPTED
        )

    @extend_schema(
        summary="Submit a failed task again, as a new task",
        request=TaskRetrySerializer,
        parameters=[IDEMPOTENCY_HEADER],
        responses={201: TaskSerializer, 409: REFUSED, 422: REFUSED},
    )
    @action(detail=True, methods=["post"])
    def retry(self, request, pk=None):
        return self._idempotent(request, self._retry)

    def _retry(self) -> Response:
        request = self.request
        serializer = TaskRetrySerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            task = services.retry_task(
                self.get_object(),
                user=request.user,
                resend_unconfirmed=serializer.validated_data["resend_unconfirmed"],
                anyway=serializer.validated_data["anyway"],
            )
        except HiDreamAlreadyRetried as exc:
            # The existing retry, linked: retry that one if it failed too.
            return Response(
                {
                    "detail": str(exc),
                    "retry": exc.retry.pk,
                    "retry_url": self.reverse_action("detail", args=[exc.retry.pk]),
                },
                status=status.HTTP_409_CONFLICT,
                headers={"Location": self.reverse_action("detail", args=[exc.retry.pk])},
            )
        except HiDreamActionRefused as exc:
            return refused_response(exc)
        return self._created(task)


def _duplicate_indexes(references: list[str]) -> list[int]:
    seen: dict[str, int] = {}
    duplicates = []
    for index, reference in enumerate(references):
        normal = reference.strip().lower()
        if normal in seen:
            duplicates.append(index)
        seen.setdefault(normal, index)
    return duplicates


def _cannot_send(reason: str) -> str:
    """The refusal of a product whose photo cannot be sent (``product_photo``'s reason)."""
    return _("This product cannot be sent: %(reason)s.") % {"reason": reason}
