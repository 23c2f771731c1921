"""The staff roles as Django groups (staff/roles.py). Permissions are normally created after
migrations (post_migrate); they are created here first so the groups can hold them."""

from django.db import migrations

from staff.migrations import _roles


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("audit", "0002_append_only"),
        ("ledger", "0008_permissions"),
        ("marketplace", "0005_permissions"),
        ("payouts", "0005_fillfactor"),
        ("reconciliation", "0004_permissions"),
    ]

    operations = [migrations.RunPython(_roles.apply_roles, migrations.RunPython.noop)]
