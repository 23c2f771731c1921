"""The staff roles as Django groups (staff/roles.py). Permissions are normally created after
migrations (post_migrate); they are created here first so the groups can hold them."""

from django.apps import apps as global_apps
from django.contrib.auth.management import create_permissions
from django.contrib.contenttypes.management import create_contenttypes
from django.db import migrations

from staff.roles import roles_sync


def apply_roles(apps, schema_editor):
    for app_config in global_apps.get_app_configs():
        if app_config.models_module is None:
            continue
        create_contenttypes(app_config, verbosity=0, apps=apps)
        create_permissions(app_config, verbosity=0, apps=apps)
    roles_sync(
        group_model=apps.get_model("auth", "Group"),
        permission_model=apps.get_model("auth", "Permission"),
    )


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

    operations = [migrations.RunPython(apply_roles, migrations.RunPython.noop)]
