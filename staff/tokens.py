"""One-time form tokens (staff.models.FormToken): issue one per confirmation page, claim it
once when the form is submitted. A claimed token whose action failed without writing anything
is released, so the page can be submitted again after fixing the input."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.utils import timezone

from staff.models import FormToken

# A confirmation page older than this is stale: its preview may no longer be true.
TOKEN_TTL = timedelta(hours=2)


@dataclass(frozen=True)
class Claim:
    ok: bool  # this request holds the token: act
    result_url: str = ""  # when not ok: where the first submit's result is (may be "")
    reason: str = ""  # when not ok: why, in words for the page


def token_issue(*, user: Any, purpose: str) -> str:
    token = secrets.token_urlsafe(24)
    FormToken.objects.create(token=token, user=user, purpose=purpose[:100])
    return token


def token_claim(*, token: str, user: Any, purpose: str) -> Claim:
    """Claim `token` for `purpose` (one UPDATE: of concurrent submits exactly one wins)."""
    if not isinstance(token, str) or not token or len(token) > 64:
        return Claim(ok=False, reason="The form has no valid token: open the page again.")
    now = timezone.now()
    claimed = FormToken.objects.filter(
        token=token,
        user=user,
        purpose=purpose,
        used_at__isnull=True,
        created_at__gte=now - TOKEN_TTL,
    ).update(used_at=now)
    if claimed == 1:
        return Claim(ok=True)
    row = FormToken.objects.filter(token=token, user=user, purpose=purpose).first()
    if row is None:
        return Claim(ok=False, reason="The form has no valid token: open the page again.")
    if row.used_at is not None:
        return Claim(
            ok=False,
            result_url=row.result_url,
            reason="This form was already submitted: it was not done a second time.",
        )
    return Claim(ok=False, reason="This confirmation page is too old: preview it again.")


def token_done(*, token: str, result_url: str) -> None:
    FormToken.objects.filter(token=token).update(result_url=result_url[:300])


def token_release(*, token: str) -> None:
    """The action refused without writing anything: the same form may be submitted again."""
    FormToken.objects.filter(token=token, result_url="").update(used_at=None)
