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


@pytest.mark.django_db(transaction=True)
def test_going_back_before_the_hmac_token_gives_each_task_its_own_random_token():
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    from hidream_models.models import ModelImageTask

    for prompt in ("a", "b", "c"):
        ModelImageTask.objects.create(mode="prompt", prompt=prompt, image_count=1)
    before_hmac = [("hidream_models", "0006_callback_unapplied_index")]
    latest = MigrationExecutor(connection).loader.graph.leaf_nodes("hidream_models")
    executor = MigrationExecutor(connection)
    executor.migrate(before_hmac)
    try:
        old_task = executor.loader.project_state(before_hmac).apps.get_model(
            "hidream_models", "ModelImageTask"
        )
        tokens = list(old_task.objects.values_list("callback_token", flat=True))
        assert len(tokens) == 3 and len(set(tokens)) == 3
        assert all(len(token) >= 43 for token in tokens)
    finally:
        MigrationExecutor(connection).migrate(latest)
    assert ModelImageTask.objects.count() == 3


@pytest.mark.django_db(transaction=True)
def test_the_one_retry_constraint_is_made_over_rows_with_several_retries():
    """Rows from before it may hold three retries of one task (concurrent retries made
    them): the oldest keeps the link, the others no longer point back, and the constraint
    is made, on SQLite and PostgreSQL alike."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    from hidream_models.models import ModelImageTask

    before = [("hidream_models", "0007_callback_token_is_an_hmac")]
    latest = MigrationExecutor(connection).loader.graph.leaf_nodes("hidream_models")
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    try:
        old = executor.loader.project_state(before).apps.get_model(
            "hidream_models", "ModelImageTask"
        )
        failed = old.objects.create(mode="prompt", prompt="p", image_count=1, status="failed")
        retries = [
            old.objects.create(mode="prompt", prompt="p", image_count=1, retry_of=failed)
            for _ in range(3)
        ]
    finally:
        MigrationExecutor(connection).migrate(latest)
    kept = ModelImageTask.objects.get(pk=failed.pk).retries.get()
    oldest = min(retries, key=lambda retry: (retry.created_at, str(retry.pk)))
    assert kept.pk == oldest.pk
    assert (
        ModelImageTask.objects.filter(pk__in=[r.pk for r in retries[1:]], retry_of=None).count()
        == 2
    )
