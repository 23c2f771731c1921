"""API tokens: issued to a user (a service account or a staff member), stored hashed with an
expiry (django-rest-knox), shown once, revocable.

    manage.py api_token issue orders-service --service-account [--ttl-days 90]
    manage.py api_token list [USERNAME]
    manage.py api_token revoke USERNAME [--key KEYPREFIX]
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from knox.models import AuthToken

from audit.context import audit_context
from audit.services import audit_record
from staff.roles import SERVICE_ACCOUNT


class Command(BaseCommand):
    help = "Issue, list and revoke API tokens (hashed at rest, with an expiry)."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        issue = sub.add_parser("issue", help="issue a token; it is printed once")
        issue.add_argument("username")
        issue.add_argument(
            "--service-account",
            action="store_true",
            help=f"create the user if missing: not staff, no password, in '{SERVICE_ACCOUNT}'",
        )
        issue.add_argument("--ttl-days", type=int, default=None, help="default: API_TOKEN_TTL_DAYS")
        listing = sub.add_parser("list", help="tokens (key prefix, expiry), never their secret")
        listing.add_argument("username", nargs="?")
        revoke = sub.add_parser("revoke", help="revoke a user's tokens (or one, by key prefix)")
        revoke.add_argument("username")
        revoke.add_argument("--key", help="the token's key prefix (from `list`)")

    def handle(self, *args: Any, **options: Any) -> None:
        with audit_context(via="command"):
            getattr(self, f"_{options['action']}")(**options)

    def _user(self, username: str) -> Any:
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user {username!r}")
        return user

    def _issue(
        self, *, username: str, service_account: bool, ttl_days: int | None, **_: Any
    ) -> None:
        if ttl_days is not None and not 1 <= ttl_days <= 3650:
            raise CommandError("--ttl-days must be between 1 and 3650")
        with transaction.atomic():
            user = get_user_model().objects.filter(username=username).first()
            if user is None:
                if not service_account:
                    raise CommandError(f"no user {username!r} (--service-account creates one)")
                user = get_user_model().objects.create_user(username=username)
                user.set_unusable_password()
                user.save()
                group = Group.objects.filter(name=SERVICE_ACCOUNT).first()
                if group is None:
                    raise CommandError(f"no group {SERVICE_ACCOUNT!r}: run `manage.py roles sync`")
                user.groups.add(group)
            expiry = timedelta(days=ttl_days) if ttl_days else None
            instance, token = (
                AuthToken.objects.create(user=user, expiry=expiry)
                if expiry
                else AuthToken.objects.create(user=user)
            )
            audit_record(
                actor="command:api_token",
                action="token.issue",
                object_type="auth.user",
                object_id=user.pk,
                data={"username": username, "key": instance.token_key, "expiry": instance.expiry},
            )
        self.stdout.write(token)
        self.stderr.write(
            f"token {instance.token_key}… for {username}, expires {instance.expiry:%Y-%m-%d}; "
            "shown once, stored hashed. Send it as `Authorization: Token <token>`."
        )

    def _list(self, *, username: str | None, **_: Any) -> None:
        tokens = AuthToken.objects.select_related("user").order_by("user__username", "created")
        if username:
            tokens = tokens.filter(user=self._user(username))
        for t in tokens:
            self.stdout.write(
                f"{t.user.get_username()}\t{t.token_key}\tcreated {t.created:%Y-%m-%d}\t"
                f"expires {t.expiry:%Y-%m-%d}"
                if t.expiry
                else "never expires"
            )

    def _revoke(self, *, username: str, key: str | None, **_: Any) -> None:
        user = self._user(username)
        tokens = AuthToken.objects.filter(user=user)
        if key:
            tokens = tokens.filter(token_key=key)
        with transaction.atomic():
            n, _ = tokens.delete()
            audit_record(
                actor="command:api_token",
                action="token.revoke",
                object_type="auth.user",
                object_id=user.pk,
                data={"username": username, "key": key or "*", "revoked": n},
            )
        self.stdout.write(f"{n} token(s) of {username} revoked")
