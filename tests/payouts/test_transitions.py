"""The transition table, pure: every allowed and every refused transition (no database)."""

from __future__ import annotations

import itertools

import pytest

from payouts.errors import TransitionRefused
from payouts.transitions import (
    IN_FLIGHT,
    TERMINAL,
    TRANSITIONS,
    State,
    Step,
    allowed,
    idempotency_key,
    next_step,
    payout_account,
    transfer_group,
    transition_check,
    transition_pairs,
)

ALLOWED = {
    ("pending", "reserved"),
    ("reserved", "submitting"),
    ("submitting", "submitted"),
    ("submitted", "paid"),
    ("submitting", "failed"),
    ("submitted", "failed"),
    ("failed", "returned"),
    ("reserved", "returned"),
}
ALL_PAIRS = list(itertools.product(State.values, State.values))
REFUSED = [pair for pair in ALL_PAIRS if pair not in ALLOWED]


def test_the_table_is_exactly_the_issues_table() -> None:
    assert set(transition_pairs()) == ALLOWED
    assert len(ALL_PAIRS) == 49 and len(REFUSED) == 41


@pytest.mark.parametrize(("from_state", "to_state"), sorted(ALLOWED))
def test_allowed_transition(from_state: str, to_state: str) -> None:
    # when / then: no error
    transition_check(from_state, to_state)
    assert allowed(from_state, to_state)


@pytest.mark.parametrize(("from_state", "to_state"), REFUSED)
def test_refused_transition(from_state: str, to_state: str) -> None:
    with pytest.raises(TransitionRefused) as caught:
        transition_check(from_state, to_state)
    # then: a clear error naming both states and what is allowed instead
    error = caught.value
    assert error.code == "transition_refused" and error.http_status == 409
    assert f"{from_state} -> {to_state} refused" in error.message
    assert error.extra["from_state"] == from_state and error.extra["to_state"] == to_state
    assert error.extra["allowed"] == sorted(TRANSITIONS[State(from_state)])
    assert not allowed(from_state, to_state)


@pytest.mark.parametrize("terminal", ["paid", "returned"])
def test_terminal_states_are_never_left(terminal: str) -> None:
    for target in State.values:
        with pytest.raises(TransitionRefused, match=f"{terminal} is terminal"):
            transition_check(terminal, target)


@pytest.mark.parametrize(("from_state", "to_state"), [("paid", "refunded"), ("bogus", "paid")])
def test_unknown_states_are_refused(from_state: str, to_state: str) -> None:
    with pytest.raises(TransitionRefused):
        transition_check(from_state, to_state)
    assert not allowed(from_state, to_state)


def test_state_sets() -> None:
    assert {State.PAID, State.RETURNED} == TERMINAL
    assert {
        State.PENDING,
        State.RESERVED,
        State.SUBMITTING,
        State.SUBMITTED,
        State.FAILED,
    } == IN_FLIGHT


@pytest.mark.parametrize(
    ("state", "step"),
    [
        ("pending", Step.RESERVE),
        ("reserved", Step.SUBMIT),
        ("submitting", Step.RESOLVE),
        ("submitted", Step.SETTLE),
        ("failed", Step.RETURN),
        ("paid", None),
        ("returned", None),
    ],
)
def test_next_step(state: str, step: Step | None) -> None:
    assert next_step(state) == step


def test_names() -> None:
    assert payout_account("restaurants:001", 3) == "restaurants:001:payouts:003"
    assert payout_account("riders:042", 1234) == "riders:042:payouts:1234"
    with pytest.raises(ValueError):
        payout_account("riders:042", 0)
    assert idempotency_key("abc") == "transfer:abc"
    assert transfer_group("abc") == "PAYOUT_abc"
