"""Query filters of the API (django-filter), documented in the OpenAPI schema."""

from __future__ import annotations

import django_filters
from django.contrib.contenttypes.models import ContentType
from django.utils.translation import gettext_lazy as _
from rest_framework.exceptions import ValidationError

from ..models import (
    GeneratedImage,
    HiDreamTemplate,
    ImageStatus,
    ModelImageTask,
    ReviewState,
    TaskStatus,
    TemplateKind,
)
from .references import parse_reference


def _filter_product(queryset, prefix: str, value: str):
    try:
        label, pk = parse_reference(value)
    except ValidationError as exc:
        raise ValidationError({"product": exc.detail}) from None
    app_label, model = label.split(".")
    content_type = ContentType.objects.filter(app_label=app_label, model=model).first()
    if content_type is None:
        raise ValidationError({"product": [_("Unknown model “%(label)s”.") % {"label": label}]})
    return queryset.filter(**{f"{prefix}content_type": content_type, f"{prefix}object_id": pk})


class TaskFilter(django_filters.FilterSet):
    """Filters for ``tasks/``."""

    status = django_filters.MultipleChoiceFilter(choices=TaskStatus.choices)
    product = django_filters.CharFilter(
        method="filter_product", label=_("Product as app_label.model:pk")
    )
    created_by = django_filters.CharFilter(field_name="created_by__username")
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")
    batch = django_filters.UUIDFilter()

    class Meta:
        model = ModelImageTask
        fields = ["status", "product", "created_by", "created_after", "created_before", "batch"]

    def filter_product(self, queryset, name, value):
        return _filter_product(queryset, "", value)


class ImageFilter(django_filters.FilterSet):
    """Filters for ``images/``."""

    task = django_filters.UUIDFilter(field_name="task_id")
    product = django_filters.CharFilter(
        method="filter_product", label=_("Product as app_label.model:pk")
    )
    status = django_filters.MultipleChoiceFilter(choices=ImageStatus.choices)
    review_state = django_filters.MultipleChoiceFilter(choices=ReviewState.choices)

    class Meta:
        model = GeneratedImage
        fields = ["task", "product", "status", "review_state"]

    def filter_product(self, queryset, name, value):
        return _filter_product(queryset, "task__", value)


class TemplateFilter(django_filters.FilterSet):
    """Filters for ``templates/``."""

    kind = django_filters.ChoiceFilter(choices=TemplateKind.choices)
    gender = django_filters.CharFilter(lookup_expr="iexact")
    scenes_type = django_filters.CharFilter(lookup_expr="iexact")
    is_active = django_filters.BooleanFilter()

    class Meta:
        model = HiDreamTemplate
        fields = ["kind", "gender", "scenes_type", "is_active"]
