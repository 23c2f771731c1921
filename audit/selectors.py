"""Reading the audit trail, newest first, with keyset pagination (never a COUNT)."""

from __future__ import annotations

from django.db.models import QuerySet

from audit.models import AuditEntry


def audit_entries(
    *,
    actor: str = "",
    action: str = "",
    object_type: str = "",
    object_id: str = "",
    before_id: int | None = None,
    limit: int = 100,
) -> list[AuditEntry]:
    qs: QuerySet[AuditEntry] = AuditEntry.objects.order_by("-id")
    if actor:
        qs = qs.filter(actor_label=actor)
    if action:
        qs = qs.filter(action__startswith=action)
    if object_type:
        qs = qs.filter(object_type=object_type)
    if object_id:
        qs = qs.filter(object_id=object_id)
    if before_id is not None:
        qs = qs.filter(id__lt=before_id)
    return list(qs[: max(1, min(limit, 500))])
