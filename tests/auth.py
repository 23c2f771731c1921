"""Users, roles and API clients for tests: a user holds exactly the roles (groups from
staff/roles.py) and permissions it is given."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from knox.models import AuthToken
from rest_framework.test import APIClient

from staff.roles import ROLES, roles_sync


def roles_ensure() -> None:
    """The role groups (a transactional test's flush removes what the migration made)."""
    if Group.objects.filter(name__in=list(ROLES)).count() != len(ROLES):
        roles_sync(group_model=Group, permission_model=Permission)


def make_user(
    username: str,
    *,
    roles: tuple[str, ...] | list[str] = (),
    perms: tuple[str, ...] | list[str] = (),
    staff: bool = True,
    superuser: bool = False,
    password: str = "x",
) -> Any:
    if superuser:
        user = get_user_model().objects.create_superuser(username, password=password)
    else:
        user = get_user_model().objects.create_user(username, password=password, is_staff=staff)
    if roles:
        roles_ensure()
        user.groups.add(*Group.objects.filter(name__in=list(roles)))
    for name in perms:
        app_label, codename = name.split(".", 1)
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    return user


def token_for(user: Any) -> str:
    """A fresh API token for `user` (stored hashed; the clear text is only returned here)."""
    return str(AuthToken.objects.create(user=user)[1])


def token_client(user: Any) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token_for(user)}")
    return client


def session_client(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


ALL_ROLES = tuple(ROLES)
