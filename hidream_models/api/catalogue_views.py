"""API views of the template catalogue and the presets."""

from __future__ import annotations

from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import extend_schema_view
from rest_framework import mixins, viewsets
from rest_framework.filters import OrderingFilter

from ..models import HiDreamPreset, HiDreamTemplate
from .filters import TemplateFilter
from .schema import extend_schema
from .serializers import (
    PresetSerializer,
    TemplateSerializer,
)
from .views import HiDreamViewSetMixin


@extend_schema_view(
    list=extend_schema(summary="The local template catalogue"),
    retrieve=extend_schema(summary="A template"),
)
class TemplateViewSet(
    HiDreamViewSetMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """HiDream's human and scene templates, as last synced (``hidream_sync_templates``)."""

    serializer_class = TemplateSerializer
    filter_backends = [DjangoFilterBackend, OrderingFilter]
    filterset_class = TemplateFilter
    ordering_fields = ["remote_id", "name_en"]
    ordering = ["kind", "remote_id"]

    def get_queryset(self):
        return HiDreamTemplate.objects.all()


@extend_schema_view(
    list=extend_schema(summary="Active generation presets"),
    retrieve=extend_schema(summary="A preset"),
)
class PresetViewSet(
    HiDreamViewSetMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """Named generation settings to pass as ``preset`` when creating tasks."""

    serializer_class = PresetSerializer
    filter_backends = [OrderingFilter]
    ordering = ["name"]

    def get_queryset(self):
        return HiDreamPreset.objects.filter(is_active=True).select_related(
            "human_template", "scene_template"
        )
