"""``manage.py hidream_purge --older-than DAYS [--dry-run]``: retention (services.retention)."""

from __future__ import annotations

import math
from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from hidream_models.services.retention import purge


class Command(BaseCommand):
    help = (
        "Delete callback events and failed tasks (with their files) older than DAYS. "
        "Published pictures and the shop's product photos are never deleted."
    )

    def add_arguments(self, parser):
        parser.add_argument("--older-than", type=float, required=True, metavar="DAYS")
        parser.add_argument("--dry-run", action="store_true", help="Only count.")

    def handle(self, *args, older_than, dry_run=False, **options):
        if not math.isfinite(older_than) or older_than < 0:
            raise CommandError("--older-than must be a number of days, 0 or more.")
        try:
            cutoff = timezone.now() - timedelta(days=older_than)
        except (OverflowError, ValueError):
            raise CommandError(
                f"--older-than {older_than:g} days reaches before the calendar begins."
            ) from None
        report = purge(cutoff, dry_run=dry_run)
        verb = "would delete" if dry_run else "deleted"
        self.stdout.write(f"hidream_purge: {verb} {report}")
