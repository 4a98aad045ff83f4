"""``manage.py hidream_purge --older-than DAYS [--orphans-older-than MINUTES] [--dry-run]``:
retention (services.retention)."""

from __future__ import annotations

import math
from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from hidream_models.services.retention import ORPHAN_GRACE, purge


class Command(BaseCommand):
    help = (
        "Delete callback events and failed tasks (with their files) older than DAYS, and "
        "files under HIDREAM_STORAGE_PREFIX that no row names, last modified more than "
        "MINUTES ago. Published pictures and the shop's product photos are never deleted."
    )

    def add_arguments(self, parser):
        parser.add_argument("--older-than", type=float, required=True, metavar="DAYS")
        parser.add_argument(
            "--orphans-older-than",
            type=float,
            default=ORPHAN_GRACE.total_seconds() / 60,
            metavar="MINUTES",
            help="Keep orphaned files younger than this: their row may be on its way "
            "(default %(default)g).",
        )
        parser.add_argument("--dry-run", action="store_true", help="Only count.")

    def handle(self, *args, older_than, dry_run=False, **options):
        if not math.isfinite(older_than) or older_than < 0:
            raise CommandError("--older-than must be a number of days, 0 or more.")
        minutes = options.get("orphans_older_than", ORPHAN_GRACE.total_seconds() / 60)
        if not math.isfinite(minutes) or not 1 <= minutes <= 10**7:
            raise CommandError(
                "--orphans-older-than must be a number of minutes from 1 to 10000000: a file "
                "younger than a minute may be one being written now."
            )
        try:
            cutoff = timezone.now() - timedelta(days=older_than)
        except (OverflowError, ValueError):
            raise CommandError(
                f"--older-than {older_than:g} days reaches before the calendar begins."
            ) from None
        report = purge(cutoff, dry_run=dry_run, orphans_older_than=timedelta(minutes=minutes))
        verb = "would delete" if dry_run else "deleted"
        self.stdout.write(f"hidream_purge: {verb} {report}")
