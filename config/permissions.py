"""Named permissions for the REST API: one class every view uses.

A view declares what each unsafe method needs, and what reading it needs:

    class CampaignFundView(APIView):
        permission_classes = [NamedPermissions]
        required_permissions = {"POST": ("marketplace.manage_campaigns",)}
        read_permissions = ("marketplace.view_campaign",)

- An unsafe method (POST, PUT, PATCH, DELETE) passes only if the user holds every permission
  listed for it; a method with nothing declared is refused. `is_staff` grants nothing here:
  money moves only for users whose groups (or themselves) hold the named permission, and for
  superusers.
- A read passes for a staff user, or for a user (a service account) holding every permission
  in `read_permissions`.
Inactive users and anonymous requests are refused (401 without credentials)."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request


class NamedPermissions(BasePermission):
    message = "You do not have permission to perform this action."

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if not (user and user.is_authenticated and user.is_active):
            return False
        if request.method in SAFE_METHODS:
            read: tuple[str, ...] = tuple(getattr(view, "read_permissions", ()))
            if user.is_staff or (read and user.has_perms(read)):
                return True
            self.message = "Reading this needs a staff account or " + (
                ", ".join(read) if read else "a staff account"
            )
            return False
        required = getattr(view, "required_permissions", {}).get(request.method or "")
        if not required:
            self.message = f"{request.method} is not allowed to anyone here."
            return False
        if user.has_perms(required):
            return True
        self.message = "This action needs the permission " + ", ".join(required) + "."
        return False


def permission_names(view: Any) -> dict[str, tuple[str, ...]]:
    """What each method of `view` needs (for the README's table and the matrix test)."""
    return {m: tuple(p) for m, p in getattr(view, "required_permissions", {}).items()}


def command_actor(*, username: str | None, permission: str, command: str) -> Any:
    """Who a management command acts as. With `--as USER` the user must exist, be active and
    hold `permission` (the same named permission the API checks), or CommandError; without
    it, the operator's shell account is named (`command:<name>@<os user>`): whoever can run
    commands on the server already holds the database's keys."""
    import getpass

    from django.contrib.auth import get_user_model
    from django.core.management import CommandError

    if not username:
        try:
            os_user = getpass.getuser()
        except (KeyError, OSError):
            os_user = "unknown"
        return f"command:{command}@{os_user}"
    user = get_user_model().objects.filter(username=username).first()
    if user is None or not user.is_active:
        raise CommandError(f"--as {username}: no such active user")
    if not user.has_perm(permission):
        raise CommandError(f"--as {username}: the user lacks the permission {permission}")
    return user
