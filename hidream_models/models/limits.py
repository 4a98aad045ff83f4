"""Rows that hold HiDream's plan limits across workers (see ``services.limits``)."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from .tasks import ModelImageTask


class HiDreamRequestSlot(models.Model):
    """One of ``HIDREAM_MAX_CONCURRENT_REQUESTS`` leases on talking to HiDream.

    A worker takes a free (or expired) slot with one conditional UPDATE before each API call
    and frees it after, so the limit holds across processes and machines; a lease expires on
    its own if its worker dies.
    """

    number = models.PositiveSmallIntegerField(
        unique=True, verbose_name=_("number"), help_text=_("Slot number, 1 to the limit.")
    )
    holder = models.CharField(
        max_length=64, blank=True, verbose_name=_("holder"), help_text=_("Who holds it now.")
    )
    leased_until = models.DateTimeField(
        null=True,
        blank=True,
        verbose_name=_("leased until"),
        help_text=_("When the lease ends even if it is never freed."),
    )

    class Meta:
        verbose_name = _("request slot")
        verbose_name_plural = _("request slots")

    def __str__(self) -> str:
        return f"#{self.number}"


class HiDreamRateReservation(models.Model):
    """Pictures booked for submission at a moment, for ``HIDREAM_MAX_IMAGES_PER_MINUTE``.

    Bookings may lie in the future: the pacer books each task the earliest moment its
    pictures fit in the window, and the task is submitted then.
    """

    send_at = models.DateTimeField(
        db_index=True, verbose_name=_("send at"), help_text=_("When the pictures are sent.")
    )
    pictures = models.PositiveSmallIntegerField(
        verbose_name=_("pictures"), help_text=_("How many pictures the submission asks for.")
    )
    task = models.OneToOneField(
        ModelImageTask,
        on_delete=models.CASCADE,
        related_name="rate_reservation",
        verbose_name=_("task"),
        help_text=_("The task the booking is for."),
    )

    class Meta:
        verbose_name = _("rate reservation")
        verbose_name_plural = _("rate reservations")

    def __str__(self) -> str:
        return f"{self.pictures} @ {self.send_at:%H:%M:%S}"
