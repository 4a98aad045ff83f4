"""A task has at most one retry (a database constraint: each retry is a paid submit).

Rows made before it may hold several retries of one task (concurrent retries did that): the
oldest keeps the link, the later ones keep their own history but no longer point back (their
``retry_of`` is cleared), so the constraint can be made.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def unlink_extra_retries(apps, schema_editor):
    Task = apps.get_model("hidream_models", "ModelImageTask")
    seen = set()
    extra = []
    for pk, retry_of in (
        Task.objects.filter(retry_of__isnull=False)
        .order_by("retry_of", "created_at", "pk")
        .values_list("pk", "retry_of")
    ):
        if retry_of in seen:
            extra.append(pk)
        seen.add(retry_of)
    Task.objects.filter(pk__in=extra).update(retry_of=None)


class Migration(migrations.Migration):

    dependencies = [
        ('contenttypes', '0002_remove_content_type_name'),
        ('hidream_models', '0007_callback_token_is_an_hmac'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RunPython(unlink_extra_retries, migrations.RunPython.noop),
        migrations.AlterField(
            model_name='modelimagetask',
            name='retry_of',
            field=models.ForeignKey(blank=True, help_text='The task this one retries, if any. A task has at most one retry.', null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='retries', to='hidream_models.modelimagetask', verbose_name='retry of'),
        ),
        migrations.AddConstraint(
            model_name='modelimagetask',
            constraint=models.UniqueConstraint(condition=models.Q(('retry_of__isnull', False)), fields=('retry_of',), name='hidream_task_one_retry'),
        ),
    ]
