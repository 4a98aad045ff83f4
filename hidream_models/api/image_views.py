"""API views of generated pictures: list, filter, approve (and publish), reject, unpublish."""

from __future__ import annotations

from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import extend_schema_view
from rest_framework import mixins, viewsets
from rest_framework.decorators import action
from rest_framework.filters import OrderingFilter
from rest_framework.response import Response

from .. import services
from ..models import GeneratedImage
from ..services import HiDreamActionRefused
from .filters import ImageFilter
from .permissions import REVIEW
from .schema import extend_schema
from .serializers import ApproveSerializer, GeneratedImageSerializer
from .views import REFUSED, HiDreamViewSetMixin, refused_response


@extend_schema_view(
    list=extend_schema(summary="List generated pictures"),
    retrieve=extend_schema(summary="A generated picture"),
)
class GeneratedImageViewSet(
    HiDreamViewSetMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """Generated pictures: list, filter, and review (approve or reject)."""

    serializer_class = GeneratedImageSerializer
    filter_backends = [DjangoFilterBackend, OrderingFilter]
    filterset_class = ImageFilter
    ordering_fields = ["stored_at", "reviewed_at", "position"]
    ordering = ["task", "position"]
    required_permissions = {"approve": REVIEW, "reject": REVIEW, "unpublish": REVIEW}

    def get_queryset(self):
        return GeneratedImage.objects.select_related("reviewed_by")

    def _answer(self, image):
        return Response(self.get_serializer(self.get_queryset().get(pk=image.pk)).data)

    @extend_schema(
        summary="Approve a picture, optionally publishing it",
        request=ApproveSerializer,
        responses={200: GeneratedImageSerializer, 409: REFUSED},
    )
    @action(detail=True, methods=["post"])
    def approve(self, request, pk=None):
        serializer = ApproveSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            image = services.approve_image(
                self.get_object(),
                user=request.user,
                publish=serializer.validated_data["publish"],
            )
        except HiDreamActionRefused as exc:
            return refused_response(exc)
        return self._answer(image)

    @extend_schema(
        summary="Reject a picture (unpublishing it if published)",
        request=None,
        responses={200: GeneratedImageSerializer, 409: REFUSED},
    )
    @action(detail=True, methods=["post"])
    def reject(self, request, pk=None):
        try:
            image = services.reject_image(self.get_object(), user=request.user)
        except HiDreamActionRefused as exc:
            return refused_response(exc)
        return self._answer(image)

    @extend_schema(
        summary="Take a published picture off the product, restoring what was there",
        request=None,
        responses={200: GeneratedImageSerializer, 409: REFUSED},
    )
    @action(detail=True, methods=["post"])
    def unpublish(self, request, pk=None):
        try:
            image = services.unpublish_image(self.get_object(), user=request.user)
        except HiDreamActionRefused as exc:
            return refused_response(exc)
        return self._answer(image)
