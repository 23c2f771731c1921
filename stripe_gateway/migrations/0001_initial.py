"""The Stripe inbox moves here from `marketplace` without touching the database.

The table keeps its name (`marketplace_stripe_event`): renaming it would break the web
processes still running the previous release during a rolling deploy, for no gain. Only
Django's state moves (`marketplace.0007_stripe_event_moved` deletes it there), plus the
content type, so that permissions and admin log entries granted on the model follow it.
"""

import django.utils.timezone
from django.db import migrations, models


def content_type_move(apps, schema_editor, *, old: str, new: str) -> None:
    ContentType = apps.get_model("contenttypes", "ContentType")
    db = schema_editor.connection.alias
    ContentType.objects.using(db).filter(app_label=old, model="stripeevent").update(app_label=new)


def forwards(apps, schema_editor):
    content_type_move(apps, schema_editor, old="marketplace", new="stripe_gateway")


def backwards(apps, schema_editor):
    content_type_move(apps, schema_editor, old="stripe_gateway", new="marketplace")


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ("contenttypes", "0002_remove_content_type_name"),
        # The table is created by marketplace's first migration.
        ("marketplace", "0004_order_payment_intent_cancel"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='StripeEvent',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('stripe_id', models.CharField(max_length=255, unique=True)),
                        ('type', models.CharField(max_length=255)),
                        ('livemode', models.BooleanField(default=False)),
                        ('account', models.CharField(blank=True, default='', max_length=255)),
                        ('api_version', models.CharField(blank=True, default='', max_length=64)),
                        ('created', models.DateTimeField(help_text="Stripe's event creation time")),
                        ('payload', models.JSONField(help_text='The event as Stripe sent it; never updated')),
                        ('status', models.CharField(choices=[('received', 'Received'), ('processing', 'Processing'), ('processed', 'Processed'), ('failed', 'Failed'), ('ignored', 'Ignored'), ('deferred', 'Deferred')], default='received', max_length=16)),
                        ('attempts', models.PositiveIntegerField(default=0)),
                        ('last_error', models.TextField(blank=True, default='')),
                        ('received_at', models.DateTimeField(default=django.utils.timezone.now)),
                        ('processed_at', models.DateTimeField(blank=True, null=True)),
                        ('next_attempt_at', models.DateTimeField(blank=True, null=True)),
                    ],
                    options={
                        'verbose_name': 'Stripe event',
                        'db_table': 'marketplace_stripe_event',
                        'ordering': ['-received_at'],
                        'indexes': [models.Index(condition=models.Q(('next_attempt_at__isnull', False)), fields=['next_attempt_at'], name='stripe_event_due_idx'), models.Index(fields=['status', 'received_at'], name='stripe_event_status_idx'), models.Index(fields=['type', 'created'], name='stripe_event_type_idx')],
                        'constraints': [models.CheckConstraint(condition=models.Q(('stripe_id__startswith', 'evt_')), name='stripe_event_id_is_evt'), models.CheckConstraint(condition=models.Q(models.Q(('next_attempt_at__isnull', True), ('status__in', ['processed', 'ignored'])), models.Q(('status__in', ['processed', 'ignored']), _negated=True), _connector='OR'), name='stripe_event_terminal_not_due')],
                    },
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(forwards, backwards),
    ]
