"""`StripeEvent` now belongs to `stripe_gateway` (its 0001 takes the state over); the table
`marketplace_stripe_event` and its rows stay exactly where they are."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("marketplace", "0006_refund_approval_campaign_close"),
        ("stripe_gateway", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="StripeEvent")],
            database_operations=[],
        ),
    ]
