"""The transition function: the one way a payout's state changes.

`transition(payout, to, ...)` must be called inside a transaction with the payout's row
locked (`payouts.lock_objects`); it checks the transition table, writes the new state (and
the timestamp that goes with it) and the audit row, together. `transitions_many` does the same
for a batch (one UPDATE per target state, one INSERT of the audit rows).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from django.db import connection
from django.utils import timezone

from payouts.models import Payout, PayoutEvent
from payouts.services.bulk import rows_insert, rows_update
from payouts.transitions import State, transition_check

# The timestamp column set when a payout enters a state.
_STAMP = {
    State.SUBMITTING: "submitting_at",
    State.SUBMITTED: "submitted_at",
    State.PAID: "paid_at",
    State.RETURNED: "returned_at",
}


def _require_transaction() -> None:
    # Blocks opened by Django's TestCase machinery do not count (same rule as the Stripe
    # seam's guard): a service must open its own.
    if not any(not getattr(b, "_from_testcase", False) for b in connection.atomic_blocks):
        raise RuntimeError("payout transitions must run inside a transaction (row locked)")


def transition(
    payout: Payout,
    to: State,
    *,
    why: str,
    actor: str,
    data: Mapping[str, Any] | None = None,
    fields: Mapping[str, Any] | None = None,
) -> Payout:
    """Move a locked payout to `to` (TransitionRefused otherwise), setting `fields` too."""
    return transitions_many(
        [payout],
        to,
        why=why,
        actor=actor,
        data={payout.pk: data or {}},
        fields={payout.pk: fields or {}},
    )[0]


def transitions_many(
    payouts: Sequence[Payout],
    to: State,
    *,
    why: str | Mapping[Any, str],
    actor: str,
    data: Mapping[Any, Mapping[str, Any]] | None = None,
    fields: Mapping[Any, Mapping[str, Any]] | None = None,
) -> list[Payout]:
    """Move locked payouts to `to`, each with its own `fields`/`data`/`why` (by payout id)."""
    _require_transaction()
    if not payouts:
        return []
    for payout in payouts:
        transition_check(payout.state, to)
    now = timezone.now()
    stamp = _STAMP.get(to)
    common: dict[str, Any] = {"state": str(to), "state_changed_at": now, "next_attempt_at": None}
    if stamp is not None:
        common[stamp] = now
    varying: set[str] = set()
    events = []
    for payout in payouts:
        from_state = payout.state
        for name, value in common.items():
            setattr(payout, name, value)
        for name, value in ((fields or {}).get(payout.pk) or {}).items():
            setattr(payout, name, value)
            varying.add(name)
        reason = why if isinstance(why, str) else why[payout.pk]
        events.append(
            PayoutEvent(
                payout=payout,
                from_state=from_state,
                to_state=to,
                why=reason,
                actor=actor[:200],
                data=dict((data or {}).get(payout.pk) or {}),
                created_at=now,
            )
        )
    if len(payouts) == 1:
        payouts[0].save(update_fields=sorted({*common, *varying}))
    else:
        # One statement (the CHECK constraints see the row whole); the from-state is checked
        # above and again by the trigger, row by row.
        if varying:
            rows_update(Payout, payouts, sorted({*common, *varying}))
        else:
            Payout.objects.filter(pk__in=[p.pk for p in payouts]).update(**common)
    rows_insert(PayoutEvent, events)
    return list(payouts)


def note(payout: Payout, *, why: str, actor: str, data: Mapping[str, Any] | None = None) -> None:
    """An audit row on a payout whose state does not change (from == to)."""
    _require_transaction()
    PayoutEvent.objects.create(
        payout=payout,
        from_state=payout.state,
        to_state=payout.state,
        why=why,
        actor=actor[:200],
        data=dict(data or {}),
    )


def created(payouts: Sequence[Payout], *, why: str, actor: str) -> None:
    """The audit rows of newly inserted (pending) payouts."""
    _require_transaction()
    rows_insert(
        PayoutEvent,
        [
            PayoutEvent(
                payout=p,
                from_state="",
                to_state=p.state,
                why=why,
                actor=actor[:200],
                data={"amount": p.amount, "asset": p.asset, "account": p.account},
                created_at=p.created_at,
            )
            for p in payouts
        ],
    )
