"""Every row lock the payouts app takes, in one place, and the one global order they follow.

Global order, within one database transaction:

1. `PayoutPayee` rows, by (kind, payee_id): whatever creates a payout for a payee, cancels
   one, returns one, or holds the payee, takes its payee row first. This serializes two
   schedulers (or a scheduler and a staff action) on one payee.
2. `Payout` rows, by id.
3. The ledger's balance rows, by (address, asset): taken by the ledger when posting, or
   beforehand by the flow runner's batch mode (`ledger.services.flows.flows_prepare`: a flow
   that computes its amount from a balance reads it under this lock, in the same transaction
   as the posting).

Nothing here is ever held across a Stripe call: the services commit before calling Stripe.
On SQLite (the demo) FOR UPDATE is not available and not needed (one writer at a time).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from uuid import UUID

from django.db.models import Q

from payouts.errors import PayoutNotFound
from payouts.models import Payout, PayoutPayee


def payees_lock(*, payees: Sequence[tuple[str, int, str]]) -> dict[tuple[str, int], PayoutPayee]:
    """Create the missing payee rows, then lock all of them in (kind, payee_id) order.

    `payees`: (kind, payee_id, ledger address). Returns (kind, payee_id) -> locked row."""
    if not payees:
        return {}
    PayoutPayee.objects.bulk_create(
        [PayoutPayee(kind=k, payee_id=i, address=a) for k, i, a in payees],
        ignore_conflicts=True,
    )
    condition = Q()
    by_kind: dict[str, list[int]] = {}
    for kind, pk, _address in payees:
        by_kind.setdefault(kind, []).append(pk)
    for kind, ids in by_kind.items():
        condition |= Q(kind=kind, payee_id__in=ids)
    rows = PayoutPayee.objects.select_for_update().filter(condition).order_by("kind", "payee_id")
    return {(row.kind, row.payee_id): row for row in rows}


def payouts_lock(
    *,
    ids: Iterable[UUID | str],
    lease_token: str | None = None,
    states: Iterable[str] | None = None,
) -> list[Payout]:
    """Lock payouts by id (in id order), keeping those still owned by `lease_token` (when
    given: the fence against a worker whose lease was taken over) and in `states`."""
    qs = Payout.objects.select_for_update().filter(pk__in=list(ids))
    if lease_token is not None:
        qs = qs.filter(lease_token=lease_token)
    if states is not None:
        qs = qs.filter(state__in=[str(s) for s in states])
    return list(qs.order_by("id"))


def payout_lock(*, payout_id: UUID | str) -> Payout:
    """Lock one payout. Raises PayoutNotFound."""
    try:
        payout = Payout.objects.select_for_update().filter(pk=payout_id).first()
    except Exception:  # a malformed id
        payout = None
    if payout is None:
        raise PayoutNotFound(
            f"payout {payout_id} does not exist.", extra={"payout_id": str(payout_id)}
        )
    return payout
