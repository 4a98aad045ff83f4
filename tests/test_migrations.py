"""The committed migrations match the models: a model change without its migration fails CI."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command


@pytest.mark.django_db
@pytest.mark.parametrize("app", ["hidream_models", "catalog"])
def test_no_model_change_is_missing_its_migration(app):
    out = io.StringIO()
    try:
        call_command("makemigrations", app, "--check", "--dry-run", stdout=out, stderr=out)
    except SystemExit:
        pytest.fail(f"{app} has model changes without a migration:\n{out.getvalue()}")
