"""Recording staff actions. Call `audit_record` inside the transaction that does the action,
so the row exists if and only if the action happened."""

from __future__ import annotations

import json
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models

from audit.context import origin_get
from audit.models import AuditEntry


def actor_label(actor: Any) -> str:
    """`alice` for a user, the string itself for a label (`system`, `command:payouts`)."""
    if actor is None:
        return "system"
    if isinstance(actor, str):
        return actor[:200] or "system"
    username = getattr(actor, "get_username", None)
    return str(username() if callable(username) else actor)[:200]


def _jsonable(data: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(data, cls=DjangoJSONEncoder, default=str))


def audit_record(
    *,
    actor: Any,
    action: str,
    obj: models.Model | None = None,
    object_type: str = "",
    object_id: str | int = "",
    amount: int | None = None,
    asset: str = "",
    data: dict[str, Any] | None = None,
) -> AuditEntry:
    """Append one audit row: who (`actor`: a user or a label), what (`action`), on what (`obj`
    or `object_type`/`object_id`), how much, with free `data`; the request id, client IP and
    channel come from the current `audit_context`."""
    if obj is not None:
        object_type = f"{obj._meta.app_label}.{obj._meta.model_name}"
        object_id = obj.pk
    origin = origin_get()
    user = actor if getattr(actor, "pk", None) is not None and not isinstance(actor, str) else None
    return AuditEntry.objects.create(
        actor=user,
        actor_label=actor_label(actor),
        action=action,
        object_type=object_type,
        object_id=str(object_id),
        amount=amount,
        asset=asset,
        data=_jsonable(data or {}),
        request_id=origin.request_id,
        ip=origin.ip,
        via=origin.via,
    )
