"""config.auth: knox's token checks, with the token, its user and the user's permissions read
in one statement. Same answers as knox + ModelBackend, nothing kept beyond the request."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import Group, Permission
from django.utils import timezone
from knox.models import AuthToken
from rest_framework.test import APIClient

from config.auth import TokenAuthentication
from tests.auth import make_user, token_for

pytestmark = pytest.mark.django_db

MANAGE_ORDERS = "marketplace.manage_orders"


def _client(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


def _post_invalid_order(client: APIClient) -> int:
    """A write that needs `manage_orders` with a body that fails validation: 403 when the
    permission is missing, 400 once it passes (nothing is written either way)."""
    return int(client.post("/api/v1/orders/", {}, format="json").status_code)


@pytest.fixture
def statements() -> Iterator[list[str]]:
    """Every statement sent to PostgreSQL (the ORM's and the prepared ones alike)."""
    sent: list[str] = []
    original = psycopg.Cursor.execute

    def execute(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        sent.append(str(query))
        return original(self, query, *args, **kwargs)

    psycopg.Cursor.execute = execute  # type: ignore[method-assign]
    try:
        yield sent
    finally:
        psycopg.Cursor.execute = original  # type: ignore[method-assign]


def test_one_statement_authenticates_and_authorises(statements: list[str]) -> None:
    # given: a user holding the permission through a group, with a token
    user = make_user("svc", staff=False)
    group = Group.objects.create(name="order writers")
    group.permissions.add(Permission.objects.get(codename="manage_orders"))
    user.groups.add(group)
    client = _client(token_for(user))

    # when: a write whose permission check passes, refused by validation afterwards
    statements.clear()
    status = _post_invalid_order(client)

    # then: the token, the user and the permissions came in one statement (knox and
    # ModelBackend took four)
    assert status == 400
    assert len(statements) == 1, statements


def test_a_permission_granted_or_revoked_counts_from_the_next_request() -> None:
    # given: a user without the permission
    user = make_user("svc", staff=False)
    client = _client(token_for(user))
    assert _post_invalid_order(client) == 403

    # when: granted (directly), then through a group, then revoked
    permission = Permission.objects.get(codename="manage_orders")
    user.user_permissions.add(permission)
    direct = _post_invalid_order(client)
    user.user_permissions.remove(permission)
    group = Group.objects.create(name="order writers")
    group.permissions.add(permission)
    user.groups.add(group)
    through_group = _post_invalid_order(client)
    group.permissions.remove(permission)
    revoked = _post_invalid_order(client)

    # then
    assert (direct, through_group, revoked) == (400, 400, 403)


def test_the_permissions_are_those_model_backend_computes() -> None:
    # given: a user with permissions of their own and from two groups
    user = make_user(
        "mixed", staff=False, roles=["Support", "Finance"], perms=["marketplace.manage_payees"]
    )
    token = token_for(user)

    # when
    authenticated, auth_token = TokenAuthentication().authenticate_credentials(token.encode())

    # then: the caches ModelBackend fills, filled with what it computes from the database
    fresh = get_user_model().objects.get(pk=user.pk)
    backend = ModelBackend()
    assert auth_token.user_id == user.pk and authenticated.pk == user.pk
    assert authenticated._user_perm_cache == backend.get_user_permissions(fresh)
    assert authenticated._group_perm_cache == backend.get_group_permissions(fresh)
    assert authenticated._perm_cache == backend.get_all_permissions(fresh)
    assert "marketplace.manage_payees" in authenticated._perm_cache
    assert authenticated.has_perm("marketplace.request_refund")  # Support's
    assert not authenticated.has_perm("ledger.revert_transaction")


def test_a_superuser_is_not_prefilled_and_passes() -> None:
    user = make_user("root", superuser=True)
    authenticated, _ = TokenAuthentication().authenticate_credentials(token_for(user).encode())
    assert not hasattr(authenticated, "_perm_cache")
    assert authenticated.has_perm(MANAGE_ORDERS)
    assert _post_invalid_order(_client(token_for(user))) == 400


def test_other_authentication_backends_get_no_prefill(settings: Any) -> None:
    settings.AUTHENTICATION_BACKENDS = [
        "django.contrib.auth.backends.ModelBackend",
        "django.contrib.auth.backends.RemoteUserBackend",
    ]
    user = make_user("svc", staff=False, perms=[MANAGE_ORDERS])
    authenticated, _ = TokenAuthentication().authenticate_credentials(token_for(user).encode())
    assert not hasattr(authenticated, "_perm_cache")
    assert _post_invalid_order(_client(token_for(user))) == 400


def test_expired_tokens_are_refused_and_deleted_as_knox_does() -> None:
    # given: a user with a valid token and an expired one
    user = make_user("svc", staff=False, perms=[MANAGE_ORDERS])
    valid, expired = token_for(user), token_for(user)
    AuthToken.objects.filter(token_key=expired[:15]).update(
        expiry=timezone.now() - timedelta(seconds=1)
    )

    # when / then: the expired one is refused and deleted
    assert _post_invalid_order(_client(expired)) == 401
    assert not AuthToken.objects.filter(token_key=expired[:15]).exists()

    # given: another expired token; when: the valid one is used; then: the expired one is
    # deleted (knox's cleanup of the user's other tokens) and the request passes
    other = token_for(user)
    AuthToken.objects.filter(token_key=other[:15]).update(
        expiry=timezone.now() - timedelta(seconds=1)
    )
    assert _post_invalid_order(_client(valid)) == 400
    assert list(AuthToken.objects.values_list("token_key", flat=True)) == [valid[:15]]


def test_wrong_inactive_and_malformed_tokens_get_401() -> None:
    user = make_user("svc", staff=False, perms=[MANAGE_ORDERS])
    token = token_for(user)
    assert _post_invalid_order(_client(token[:-1] + ("0" if token[-1] != "0" else "1"))) == 401
    assert _post_invalid_order(_client("0" * 64)) == 401
    assert _post_invalid_order(_client(token[:15] + "\x00" + token[16:])) == 401
    assert _post_invalid_order(_client("\xff" * 64)) == 401
    user.is_active = False
    user.save(update_fields=["is_active"])
    assert _post_invalid_order(_client(token)) == 401
