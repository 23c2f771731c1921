"""The transition function on the database: every allowed transition writes the state, its
timestamp and one audit row together; every refused one raises and writes nothing."""

from __future__ import annotations

import itertools
import uuid

import pytest
from django.db import transaction

from payouts.errors import TransitionRefused
from payouts.models import PayoutEvent
from payouts.services import states
from payouts.transitions import State, transition_pairs
from tests.payouts.test_db_rules import make_payout

pytestmark = pytest.mark.django_db

ALLOWED = transition_pairs()
REFUSED = [
    (a, b) for a, b in itertools.product(State.values, State.values) if (a, b) not in ALLOWED
]
STAMPS = {
    "submitting": "submitting_at",
    "submitted": "submitted_at",
    "paid": "paid_at",
    "returned": "returned_at",
}


@pytest.mark.parametrize(("from_state", "to_state"), ALLOWED)
def test_allowed_transition_writes_state_and_audit_row(from_state: str, to_state: str) -> None:
    # given
    needs_transfer = "submitted" in (from_state, to_state) or to_state == "paid"
    payout = make_payout(
        from_state,
        idempotency_key="transfer:t",
        transfer_id=f"tr_{uuid.uuid4().hex[:16]}" if needs_transfer else None,
    )
    # when
    with transaction.atomic():
        states.transition(payout, State(to_state), why="because", actor="test:me", data={"k": 1})
    # then
    payout.refresh_from_db()
    assert payout.state == to_state
    if to_state in STAMPS:
        assert getattr(payout, STAMPS[to_state]) is not None
    event = PayoutEvent.objects.get(payout=payout)
    assert (event.from_state, event.to_state, event.why, event.actor, event.data) == (
        from_state,
        to_state,
        "because",
        "test:me",
        {"k": 1},
    )


@pytest.mark.parametrize(("from_state", "to_state"), REFUSED)
def test_refused_transition_changes_nothing(from_state: str, to_state: str) -> None:
    payout = make_payout(from_state)
    with pytest.raises(TransitionRefused), transaction.atomic():
        states.transition(payout, State(to_state), why="no", actor="test")
    payout.refresh_from_db()
    assert payout.state == from_state
    assert not PayoutEvent.objects.filter(payout=payout).exists()


def test_a_transition_needs_a_transaction() -> None:
    payout = make_payout("pending")
    with pytest.raises(RuntimeError, match="inside a transaction"):
        states.transition(payout, State.RESERVED, why="x", actor="t")


def test_a_batch_is_all_or_nothing() -> None:
    ok = make_payout("reserved", seq=1, payee_id=7)
    bad = make_payout("paid", seq=1, payee_id=8)
    with pytest.raises(TransitionRefused), transaction.atomic():
        states.transitions_many([ok, bad], State.SUBMITTING, why="x", actor="t")
    ok.refresh_from_db()
    assert ok.state == "reserved"
    assert not PayoutEvent.objects.exists()
