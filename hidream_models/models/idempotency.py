"""``HiDreamIdempotencyKey``: an API client's ``Idempotency-Key`` and what it was used for.

As Stripe's: a key names one request of one user. The same key with the same request gets the
first answer again; with another request it is refused, naming the key; while the first is
still running, the second waits its turn (409). Keys expire after
``HIDREAM_IDEMPOTENCY_KEY_TTL``.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class HiDreamIdempotencyKey(models.Model):
    """One ``Idempotency-Key`` of one user: the request it named and the answer it got."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="+",
        help_text=_("Who sent the key (keys are per user)."),
        verbose_name=_("user"),
    )
    key = models.CharField(
        max_length=255,
        help_text=_("The Idempotency-Key header as the client sent it."),
        verbose_name=_("key"),
    )
    fingerprint = models.CharField(
        max_length=64,
        help_text=_(
            "SHA-256 of the request: method, path and canonical body (uploaded files by the "
            "hash of their bytes)."
        ),
        verbose_name=_("request fingerprint"),
    )
    status_code = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        help_text=_("The HTTP status of the first answer; empty while that request runs."),
        verbose_name=_("status code"),
    )
    result = models.JSONField(
        default=dict,
        blank=True,
        help_text=_("What the first answer named (a task id, or a bulk answer's body)."),
        verbose_name=_("result"),
    )
    created_at = models.DateTimeField(
        auto_now_add=True,
        db_index=True,
        help_text=_("When the key was first used; it expires HIDREAM_IDEMPOTENCY_KEY_TTL later."),
        verbose_name=_("created at"),
    )

    class Meta:
        verbose_name = _("idempotency key")
        verbose_name_plural = _("idempotency keys")
        constraints = [
            models.UniqueConstraint(fields=["user", "key"], name="hidream_idempotency_key_once")
        ]

    def __str__(self) -> str:
        return self.key
