"""Indexes the dashboard's reads need on other apps' tables (PostgreSQL only; no-ops elsewhere):

- the webhook inbox by the Stripe object its payload describes (`data.object.id`,
  `.payment_intent`, `.charge`): an order's timeline finds its events by index;
- refunds awaiting approval (a partial index: the approvals queue and the home count read
  only those rows);
- customers by lower-cased email (the search box).

Created IF NOT EXISTS and only when the table exists (the inbox table may move with its
model), so this migration is safe to re-run and to reorder."""

from django.db import migrations

INDEXES = [
    ("marketplace_stripe_event", "staff_inbox_object_id_idx",
     "((payload->'data'->'object'->>'id'))"),
    ("marketplace_stripe_event", "staff_inbox_object_pi_idx",
     "((payload->'data'->'object'->>'payment_intent'))"),
    ("marketplace_stripe_event", "staff_inbox_object_ch_idx",
     "((payload->'data'->'object'->>'charge'))"),
    ("marketplace_refund", "staff_refund_awaiting_idx",
     "(id) WHERE status = 'awaiting_approval'"),
    ("marketplace_customer", "staff_customer_email_idx", "(lower(email))"),
]


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        for table, name, definition in INDEXES:
            cursor.execute("SELECT to_regclass(%s)", [table])
            if cursor.fetchone()[0] is None:
                continue
            cursor.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {table} {definition}")


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        for _table, name, _definition in INDEXES:
            cursor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [
        ("staff", "0003_form_tokens"),
        ("marketplace", "0007_stripe_event_moved"),
    ]

    operations = [migrations.RunPython(create, drop)]
