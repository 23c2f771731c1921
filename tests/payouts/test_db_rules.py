"""The database refuses what the code must never do: a transition outside the table (trigger),
deleting a payout, editing the audit trail, two payouts in flight for one payee, one transfer
for two payouts, a state that implies a Stripe call without a stored key."""

from __future__ import annotations

import itertools
import uuid
from typing import Any

import pytest
from django.db import DatabaseError, IntegrityError, connection, transaction

from payouts.models import PayeeHoldChange, Payout, PayoutEvent
from payouts.services import states
from payouts.transitions import State, transition_pairs

pytestmark = pytest.mark.django_db

ALLOWED = set(transition_pairs())
CHANGES = [(a, b) for a, b in itertools.product(State.values, State.values) if a != b]


def make_payout(state: str = "pending", **fields: Any) -> Payout:
    values: dict[str, Any] = {
        "payee_kind": "restaurant",
        "payee_id": 1,
        "seq": 1,
        "payee_address": "restaurants:001",
        "account": "restaurants:001:payouts:001",
        "destination": "acct_test",
        "asset": "USD/2",
        "amount": 500,
        "state": state,
    }
    if state in ("submitting", "submitted", "paid", "failed"):
        values["idempotency_key"] = "transfer:x"
    if state in ("submitted", "paid"):
        values["transfer_id"] = f"tr_{uuid.uuid4().hex[:16]}"
    values.update(fields)
    payout = Payout(**values)
    payout.idempotency_key = values.get("idempotency_key", "")
    payout.save(force_insert=True)
    return payout


def raw_update(payout: Payout, **columns: Any) -> None:
    sets = ", ".join(f"{name} = %s" for name in columns)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE payouts_payout SET {sets} WHERE id = %s", [*columns.values(), payout.pk]
        )


@pytest.mark.parametrize(("from_state", "to_state"), CHANGES)
def test_trigger_allows_only_the_table(from_state: str, to_state: str) -> None:
    # given: a payout in from_state, with what any later state needs already set
    payout = make_payout(
        from_state,
        idempotency_key="transfer:x",
        transfer_id=f"tr_{uuid.uuid4().hex[:16]}",
    )
    # when: a raw UPDATE of the state column (what an admin `update()` or a shell would do)
    if (from_state, to_state) in ALLOWED:
        raw_update(payout, state=to_state)
        payout.refresh_from_db()
        assert payout.state == to_state
    else:
        with pytest.raises(DatabaseError, match="is refused"):
            raw_update(payout, state=to_state)
        payout.refresh_from_db()
        assert payout.state == from_state


def test_other_columns_update_freely() -> None:
    payout = make_payout("paid")
    raw_update(payout, last_error="x", needs_attention=True)
    payout.refresh_from_db()
    assert payout.needs_attention and payout.state == "paid"


def test_payouts_cannot_be_deleted() -> None:
    payout = make_payout("returned")
    with (
        pytest.raises(DatabaseError, match="DELETE on payouts_payout is refused"),
        transaction.atomic(),
    ):
        Payout.objects.filter(pk=payout.pk).delete()
    assert Payout.objects.filter(pk=payout.pk).exists()


def test_audit_rows_are_append_only() -> None:
    payout = make_payout("pending")
    with transaction.atomic():
        states.transition(payout, State.RESERVED, why="test", actor="test")
    event = PayoutEvent.objects.get(payout=payout, to_state="reserved")
    with (
        pytest.raises(DatabaseError, match="UPDATE on payouts_event is refused"),
        transaction.atomic(),
    ):
        PayoutEvent.objects.filter(pk=event.pk).update(why="rewritten")
    with (
        pytest.raises(DatabaseError, match="DELETE on payouts_event is refused"),
        transaction.atomic(),
    ):
        PayoutEvent.objects.filter(pk=event.pk).delete()
    hold = PayeeHoldChange.objects.create(
        payee_kind="rider", payee_id=1, on_hold=True, reason="x", actor="t"
    )
    with pytest.raises(DatabaseError, match="payouts_hold_change is refused"), transaction.atomic():
        PayeeHoldChange.objects.filter(pk=hold.pk).update(reason="y")


@pytest.mark.parametrize("in_flight", ["pending", "reserved", "submitting", "submitted", "failed"])
def test_one_payout_in_flight_per_payee(in_flight: str) -> None:
    make_payout(in_flight, seq=1)
    with (
        pytest.raises(IntegrityError, match="payout_one_in_flight_per_payee"),
        transaction.atomic(),
    ):
        make_payout("pending", seq=2)


def test_terminal_payouts_do_not_count_as_in_flight() -> None:
    make_payout("paid", seq=1)
    make_payout("returned", seq=2)
    make_payout("reserved", seq=3)
    assert Payout.objects.count() == 3


def test_sequence_numbers_are_unique_per_payee() -> None:
    make_payout("paid", seq=1)
    with pytest.raises(IntegrityError, match="payout_payee_seq_uniq"), transaction.atomic():
        make_payout("returned", seq=1)
    make_payout("paid", seq=1, payee_id=2)  # another payee may have its own N=1


def test_one_transfer_belongs_to_one_payout() -> None:
    make_payout("paid", seq=1, transfer_id="tr_same")
    with pytest.raises(IntegrityError, match="payout_transfer_uniq"), transaction.atomic():
        make_payout("paid", seq=2, transfer_id="tr_same")


@pytest.mark.parametrize(
    ("fields", "constraint"),
    [
        ({"amount": 0}, "payout_amount_gt_0"),
        ({"amount": -5}, "payout_amount_gt_0"),
        ({"seq": 0}, "payout_seq_gte_1"),
        ({"state": "paid", "transfer_id": None}, "payout_paid_has_transfer"),
        ({"state": "submitted", "transfer_id": None}, "payout_paid_has_transfer"),
        ({"state": "submitting", "idempotency_key": ""}, "payout_key_before_call"),
        ({"state": "paid", "idempotency_key": ""}, "payout_key_before_call"),
        ({"transfer_id": "po_123"}, "payout_transfer_is_tr"),
        ({"amount_reversed": 501}, "payout_amount_reversed_range"),
    ],
)
def test_check_constraints(fields: dict[str, Any], constraint: str) -> None:
    with pytest.raises(IntegrityError, match=constraint), transaction.atomic():
        payout = make_payout(fields.pop("state", "pending"))
        raw_update(payout, **fields)


def test_unknown_state_is_refused_at_insert() -> None:
    with pytest.raises(IntegrityError, match="payout_state_valid"), transaction.atomic():
        make_payout("cancelled")
