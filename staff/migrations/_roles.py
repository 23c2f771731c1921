"""Shared by the roles migrations: create the content types and permissions now (normally
done after migrations, by post_migrate) so the groups can hold them, then apply staff/roles.py
(idempotent: each group gets exactly its role's permissions)."""

from typing import Any

from django.apps import apps as global_apps
from django.contrib.auth.management import create_permissions
from django.contrib.contenttypes.management import create_contenttypes

from staff.roles import roles_sync


def apply_roles(apps: Any, schema_editor: Any) -> None:
    for app_config in global_apps.get_app_configs():
        if app_config.models_module is None:
            continue
        create_contenttypes(app_config, verbosity=0, apps=apps)
        create_permissions(app_config, verbosity=0, apps=apps)
    roles_sync(
        group_model=apps.get_model("auth", "Group"),
        permission_model=apps.get_model("auth", "Permission"),
        strict=False,
    )
