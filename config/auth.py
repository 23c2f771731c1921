"""API token authentication: knox's tokens, checks and answers, in one statement per request.

knox's `TokenAuthentication` runs, for every API request, a query for the token (with its
user), a second one for all of the user's tokens (to delete the user's *other* expired tokens),
and then Django's `ModelBackend` runs two more when the view checks a named permission (the
user's own permissions, then their groups'). Here, on PostgreSQL, one prepared statement
returns the token, its user, whether the user has another expired token, and the user's own
and group permission names; the rest is knox's code path unchanged:

- the presented token is found by its key prefix and compared by digest (`hash_token`,
  `compare_digest`), an expired one is deleted and refused (`token_expired` sent), an
  inactive user is refused: knox's `authenticate_credentials`, `_cleanup_token` and
  `validate_user`, called as knox calls them;
- the user's other expired tokens are still deleted on the request that finds them (knox's
  own `_cleanup_token`, only when the statement says there is one);
- the permission names are computed from the same tables as `ModelBackend`
  (`user_permissions`, and the permissions of the user's `groups`) and stored in the caches
  `ModelBackend` fills on the user instance of this request (`_user_perm_cache`,
  `_group_perm_cache`, `_perm_cache`), so `has_perm` answers exactly as it would have with
  its own two queries, read a few microseconds earlier in the same request. Nothing outlives
  the request: a permission granted or revoked counts from the next request on. Only when
  `ModelBackend` is the sole authentication backend, and never for a superuser (whom
  `has_perm` lets through before any lookup).

Other databases (the SQLite demo) take knox's path unchanged. A token that is not UTF-8 (knox
answered a 500) or holds a NUL byte (PostgreSQL refuses it as a parameter) is refused as
invalid, before any query.
"""

from __future__ import annotations

import binascii
from functools import cache
from hmac import compare_digest
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from drf_spectacular.contrib.knox_auth_token import KnoxTokenScheme
from knox import auth as knox_auth
from knox.crypto import hash_token
from knox.models import get_token_model
from knox.settings import CONSTANTS, knox_settings
from knox.signals import token_expired
from rest_framework import exceptions

from common import rawsql

MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"


@cache
def _lookup_sql() -> tuple[str, list[Any], list[Any]] | None:
    """The statement and the token's and user's fields in its columns, or None when the user
    model has no Django permissions (`PermissionsMixin`)."""
    token_model = get_token_model()
    user_model = get_user_model()
    names = {f.name for f in user_model._meta.get_fields()}
    if not {"user_permissions", "groups"} <= names:
        return None
    qn = connection.ops.quote_name
    token_fields, token_columns = rawsql.columns(token_model, "t")
    user_fields, user_columns = rawsql.columns(user_model, "u")
    token_table = qn(token_model._meta.db_table)
    token_user = qn(str(token_model._meta.get_field("user").column))
    user_pk = qn(str(user_model._meta.pk.column))  # type: ignore[union-attr]
    user_perms = user_model._meta.get_field("user_permissions")
    user_groups = user_model._meta.get_field("groups")
    group_perms = Group._meta.get_field("permissions")
    up, ug, gp = (
        f.remote_field.through._meta  # type: ignore[union-attr]
        for f in (user_perms, user_groups, group_perms)
    )
    permission, content_type = Permission._meta, ContentType._meta
    name = (
        f"ct.{qn('app_label')} || '.' || p.{qn('codename')} "
        f"FROM {qn(permission.db_table)} p JOIN {qn(content_type.db_table)} ct "
        f"ON ct.{qn('id')} = p.{qn('content_type_id')}"
    )
    sql = (
        f"SELECT {token_columns}, {user_columns}, "
        # knox deletes the user's other expired tokens on each request: is there one?
        f"EXISTS (SELECT 1 FROM {token_table} o WHERE o.{token_user} = t.{token_user} "
        f"AND o.{qn('digest')} <> t.{qn('digest')} AND o.{qn('expiry')} < %s), "
        # ModelBackend._get_user_permissions: user.user_permissions
        f"ARRAY(SELECT {name} JOIN {qn(up.db_table)} up "
        f"ON up.{qn(user_perms.m2m_reverse_name())} = p.{qn('id')} "  # type: ignore[attr-defined]
        f"WHERE up.{qn(user_perms.m2m_column_name())} = u.{user_pk}), "  # type: ignore[attr-defined]
        # ModelBackend._get_group_permissions: Permission(group__in=user.groups)
        f"ARRAY(SELECT {name} JOIN {qn(gp.db_table)} gp "
        f"ON gp.{qn(group_perms.m2m_reverse_name())} = p.{qn('id')} "  # type: ignore[attr-defined]
        f"JOIN {qn(ug.db_table)} ug "
        f"ON ug.{qn(user_groups.m2m_reverse_name())} = gp.{qn(group_perms.m2m_column_name())} "  # type: ignore[attr-defined]
        f"WHERE ug.{qn(user_groups.m2m_column_name())} = u.{user_pk}) "  # type: ignore[attr-defined]
        f"FROM {token_table} t JOIN {qn(user_model._meta.db_table)} u "
        f"ON u.{user_pk} = t.{token_user} WHERE t.{qn('token_key')} = %s"
    )
    return sql, token_fields, user_fields


class TokenAuthentication(knox_auth.TokenAuthentication):
    """knox's token authentication (same header, same checks, same errors), with the token,
    its user and the user's permissions read in one statement (module docstring)."""

    def authenticate_credentials(self, token: bytes) -> tuple[Any, Any]:
        msg = _("Invalid token.")
        try:
            text = token.decode("utf-8")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed(msg) from None
        if "\x00" in text:
            raise exceptions.AuthenticationFailed(msg)
        lookup = _lookup_sql() if connection.vendor == "postgresql" else None
        if lookup is None:
            return super().authenticate_credentials(token)  # type: ignore[no-any-return]
        sql, token_fields, user_fields = lookup
        token_model = get_token_model()
        now = timezone.now()
        # Prepared at its first run on a connection (then a generic plan; never behind
        # PgBouncer): its joins and subqueries took PostgreSQL 0.64 ms to plan against 0.07 ms
        # to run, and it was planned on every request before.
        rows = rawsql.fetch_all(sql, [now, text[: CONSTANTS.TOKEN_KEY_LENGTH]], prepare=True)
        split = len(token_fields)
        for row in rows:
            auth_token = rawsql.instance(token_model, token_fields, row[:split])
            user = rawsql.instance(get_user_model(), user_fields, row[split:-3])
            token_model.user.field.set_cached_value(auth_token, user)  # type: ignore[attr-defined]
            others_expired, user_perms, group_perms = row[-3:]
            if others_expired:
                if self._cleanup_token(auth_token):  # knox's own, others and this one
                    continue
            elif self._expired(auth_token):
                continue
            try:
                digest = hash_token(text)
            except (TypeError, binascii.Error):
                raise exceptions.AuthenticationFailed(msg) from None
            if compare_digest(digest, auth_token.digest):
                if knox_settings.AUTO_REFRESH and auth_token.expiry:
                    self.renew_token(auth_token)
                found = self.validate_user(auth_token)
                _permissions_prefill(user, set(user_perms), set(group_perms))
                return found  # type: ignore[no-any-return]
        raise exceptions.AuthenticationFailed(msg)

    def _expired(self, auth_token: Any) -> bool:
        """The second half of knox's `_cleanup_token`: the presented token itself."""
        if auth_token.expiry is not None and auth_token.expiry < timezone.now():
            username = auth_token.user.get_username()
            auth_token.delete()
            token_expired.send(sender=self.__class__, username=username, source="auth_token")
            return True
        return False


def _permissions_prefill(user: Any, user_perms: set[str], group_perms: set[str]) -> None:
    """Fill ModelBackend's per-instance caches as its `get_all_permissions` would."""
    if list(settings.AUTHENTICATION_BACKENDS) != [MODEL_BACKEND]:
        return
    if not user.is_active or user.is_superuser:
        return
    user._user_perm_cache = user_perms
    user._group_perm_cache = group_perms
    user._perm_cache = {*user_perms, *group_perms}


class TokenScheme(KnoxTokenScheme):
    """The OpenAPI security scheme of knox's tokens (`knoxApiToken`), for this subclass."""

    target_class = "config.auth.TokenAuthentication"
