"""Product references of the API: ``app_label.model:pk``, e.g. ``catalog.product:3``.

Only models listed in ``HIDREAM_PRODUCT_MODELS`` can be named, each with the field that holds
its image, so an API client cannot point the app at arbitrary rows (users, orders...).
"""

from __future__ import annotations

from django.apps import apps
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Model
from django.utils.translation import gettext as _
from rest_framework import serializers

from ..conf import hidream_settings
from ..services.permissions import VIEW, require_product_permission


def product_reference(content_type_id: int | None, object_id: str) -> str | None:
    """The ``app_label.model:pk`` text of a task's product (None without one)."""
    if not content_type_id:
        return None
    content_type = ContentType.objects.get_for_id(content_type_id)
    return f"{content_type.app_label}.{content_type.model}:{object_id}"


def parse_reference(value: str) -> tuple[str, str]:
    """Split ``app_label.model:pk``; raises ``serializers.ValidationError`` with an example."""
    label, sep, pk = str(value).strip().partition(":")
    if not sep or not pk or label.count(".") != 1:
        raise serializers.ValidationError(
            _("Name a product as app_label.model:pk, e.g. catalog.product:3; got “%(value)s”.")
            % {"value": value}
        )
    return label.lower(), pk


def resolve_products(references: list[str], user) -> tuple[dict[int, Model], dict[int, list[str]]]:
    """Look up products by reference: ``({index: product}, {index: [errors]})``.

    One query per model, however many references. Raises ``PermissionDenied`` (403) before
    any lookup when ``user`` may not view one of the product models named (view or change, as
    the admin reads them): the app's permissions do not stand in for the shop's.
    """
    allowed = hidream_settings.PRODUCT_MODELS
    wanted: dict[str, dict[str, list[int]]] = {}
    errors: dict[int, list[str]] = {}
    for index, reference in enumerate(references):
        try:
            label, pk = parse_reference(reference)
        except serializers.ValidationError as exc:
            errors[index] = [str(message) for message in exc.detail]
            continue
        if label not in allowed:
            known = ", ".join(sorted(allowed)) or _("none (set HIDREAM_PRODUCT_MODELS)")
            errors[index] = [
                _("“%(label)s” is not a product model the API accepts; accepted: %(known)s.")
                % {"label": label, "known": known}
            ]
            continue
        wanted.setdefault(label, {}).setdefault(pk, []).append(index)
    for label in sorted(wanted):
        require_product_permission(user, apps.get_model(label), VIEW)
    found: dict[int, Model] = {}
    for label, by_pk in wanted.items():
        model = apps.get_model(label)
        try:
            rows = {str(obj.pk): obj for obj in model._default_manager.filter(pk__in=list(by_pk))}
        except (ValueError, TypeError, OverflowError, DjangoValidationError):
            # A pk the database cannot hold (or of the wrong type): look them up one by one.
            rows = {}
            for pk in by_pk:
                try:
                    obj = model._default_manager.filter(pk=pk).first()
                except (ValueError, TypeError, OverflowError, DjangoValidationError):
                    obj = None
                if obj is not None:
                    rows[str(obj.pk)] = obj
        for pk, indexes in by_pk.items():
            for index in indexes:
                if pk in rows:
                    found[index] = rows[pk]
                else:
                    errors[index] = [
                        _("No %(label)s with primary key “%(pk)s”.") % {"label": label, "pk": pk}
                    ]
    return found, errors


def product_image(product: Model):
    """The product's image file, per ``HIDREAM_PRODUCT_MODELS``."""
    label = f"{product._meta.app_label}.{product._meta.model_name}"
    field_name = hidream_settings.PRODUCT_MODELS.get(label, "image")
    value = getattr(product, field_name, None)
    return value() if callable(value) else value
