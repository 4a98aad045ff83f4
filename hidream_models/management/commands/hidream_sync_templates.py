"""``manage.py hidream_sync_templates``: refresh the local catalogue of HiDream templates."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from hidream_models.exceptions import HiDreamError
from hidream_models.services.templates import sync_templates


class Command(BaseCommand):
    help = "Fetch HiDream's human and scene templates (all pages) and update the catalogue."

    def add_arguments(self, parser):
        parser.add_argument("--kind", choices=["human", "scene"], help="Only this kind.")
        parser.add_argument(
            "--no-previews", action="store_true", help="Do not copy preview images."
        )

    def handle(self, *args, kind=None, no_previews=False, **options):
        kinds = (kind,) if kind else ("human", "scene")
        try:
            report = sync_templates(kinds, with_previews=not no_previews)
        except (HiDreamError, ImproperlyConfigured) as exc:
            raise CommandError(f"Template sync failed: {exc}") from exc
        self.stdout.write(f"hidream_sync_templates: {report}")
        for problem in report.preview_errors:
            self.stderr.write(f"  preview not stored: {problem}")
