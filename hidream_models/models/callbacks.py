"""``CallbackEvent``: every callback HiDream delivered, stored as it came (in the style of
dj-stripe's webhook log)."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from .tasks import ModelImageTask


class CallbackOutcome(models.TextChoices):
    RECEIVED = "received", _("Received")
    APPLIED = "applied", _("Applied")
    UNCHANGED = "unchanged", _("Applied, nothing new")
    INVALID = "invalid", _("Invalid body")
    ERROR = "error", _("Error while applying")


class CallbackEvent(models.Model):
    """A callback HiDream delivered for a task, stored as it came, then applied."""

    task = models.ForeignKey(
        ModelImageTask,
        on_delete=models.CASCADE,
        related_name="callback_events",
        help_text=_("The task the callback URL named."),
        verbose_name=_("task"),
    )
    received_at = models.DateTimeField(
        auto_now_add=True, db_index=True, help_text=_("Arrival."), verbose_name=_("received at")
    )
    remote_addr = models.GenericIPAddressField(
        null=True,
        blank=True,
        help_text=_("Address the callback came from."),
        verbose_name=_("remote address"),
    )
    headers = models.JSONField(
        default=dict,
        blank=True,
        help_text=_("Request headers, secrets removed."),
        verbose_name=_("headers"),
    )
    body = models.TextField(
        blank=True, help_text=_("The body as received."), verbose_name=_("body")
    )
    outcome = models.CharField(
        max_length=16,
        choices=CallbackOutcome.choices,
        default=CallbackOutcome.RECEIVED,
        help_text=_("What processing made of it."),
        verbose_name=_("outcome"),
    )
    error = models.TextField(
        blank=True, help_text=_("Why it was invalid or failed."), verbose_name=_("error")
    )
    attempts = models.PositiveIntegerField(
        default=0,
        help_text=_("How many times applying it was tried."),
        verbose_name=_("attempts"),
    )
    traceback = models.TextField(
        blank=True,
        help_text=_("The traceback of the last failed attempt to apply it, for developers."),
        verbose_name=_("traceback"),
    )

    class Meta:
        verbose_name = _("callback event")
        verbose_name_plural = _("callback events")
        ordering = ["-received_at"]
        indexes = [
            # The sweep looks for callbacks whose job was lost: the few still "received".
            # A partial index keeps that a lookup, however long the log grows.
            models.Index(
                fields=["received_at"],
                condition=models.Q(outcome="received"),
                name="hidream_callback_unapplied",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.received_at:%Y-%m-%d %H:%M:%S} · {self.get_outcome_display()}"
