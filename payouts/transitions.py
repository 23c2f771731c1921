"""The payout state machine as data: the states, the ONE transition table, and pure helpers.

No database access here: the services check every state change against `TRANSITIONS` under
the payout's row lock (and a PostgreSQL trigger, generated from the same table, refuses any
other UPDATE of the state column).

    pending ──> reserved ──> submitting ──> submitted ──> paid
                   │              │              │
                   │              └──> failed <──┘
                   │                     │
                   └────> returned <─────┘

- pending:    the row exists; nothing moved yet (only ever seen inside the creating transaction
              or after a crash in it, which rolls it back).
- reserved:   the payee's balance moved to `<payee>:payouts:<N>` (ledger `payout-reserve:<id>`).
- submitting: the idempotency key `transfer:<id>` is stored and committed; we MAY have called
              Stripe. Resolved only by looking the transfer up (then, if absent, the same key).
- submitted:  Stripe created the transfer; its `tr_` id is recorded.
- paid:       `<payee>:payouts:<N>` moved to `stripe:balance` (ledger `payout-settle:<id>`).
- failed:     Stripe refused the transfer, or it was reversed / the connected account's payout
              failed. The money is on its way back.
- returned:   the money is back on the payee's account (ledger `payout-return:<id>`), or a
              reserved payout was cancelled. Terminal, like paid.
"""

from __future__ import annotations

from enum import StrEnum

from django.db import models

from payouts.errors import TransitionRefused


class State(models.TextChoices):
    PENDING = "pending", "Pending"
    RESERVED = "reserved", "Reserved"
    SUBMITTING = "submitting", "Submitting"
    SUBMITTED = "submitted", "Submitted"
    PAID = "paid", "Paid"
    FAILED = "failed", "Failed"
    RETURNED = "returned", "Returned"


# The one table. Anything not listed is refused.
TRANSITIONS: dict[State, frozenset[State]] = {
    State.PENDING: frozenset({State.RESERVED}),
    State.RESERVED: frozenset({State.SUBMITTING, State.RETURNED}),
    State.SUBMITTING: frozenset({State.SUBMITTED, State.FAILED}),
    State.SUBMITTED: frozenset({State.PAID, State.FAILED}),
    State.PAID: frozenset(),
    State.FAILED: frozenset({State.RETURNED}),
    State.RETURNED: frozenset(),
}

INITIAL = State.PENDING
TERMINAL: frozenset[State] = frozenset(s for s, to in TRANSITIONS.items() if not to)
# Not terminal: a payee with one of these has a payout "in flight" (at most one, a DB rule).
IN_FLIGHT: frozenset[State] = frozenset(State) - TERMINAL
# States in which a transfer may exist at Stripe: never cancelled, only looked up.
MAY_HAVE_TRANSFER: frozenset[State] = frozenset(
    {State.SUBMITTING, State.SUBMITTED, State.PAID, State.FAILED}
)


def allowed(from_state: str, to_state: str) -> bool:
    """Whether the table allows `from_state -> to_state` (unknown states: False)."""
    try:
        return State(to_state) in TRANSITIONS[State(from_state)]
    except ValueError:
        return False


def transition_check(from_state: str, to_state: str) -> None:
    """Raise TransitionRefused unless the table allows `from_state -> to_state`."""
    if allowed(from_state, to_state):
        return
    try:
        targets = sorted(TRANSITIONS[State(from_state)])
    except ValueError:
        raise TransitionRefused(
            f"unknown payout state {from_state!r}",
            extra={"from_state": from_state, "to_state": to_state},
        ) from None
    if to_state not in State.values:
        reason = f"{to_state!r} is not a payout state"
    elif not targets:
        reason = f"{from_state} is terminal"
    else:
        reason = f"from {from_state} a payout can only go to {', '.join(targets)}"
    raise TransitionRefused(
        f"payout transition {from_state} -> {to_state} refused: {reason}",
        extra={"from_state": from_state, "to_state": to_state, "allowed": targets},
    )


def transition_pairs() -> list[tuple[str, str]]:
    """Every allowed (from, to) pair, sorted (the trigger and the tests enumerate these)."""
    return sorted((str(f), str(t)) for f, targets in TRANSITIONS.items() for t in targets)


class Step(StrEnum):
    """What a driver does next for a payout in a given state."""

    RESERVE = "reserve"
    SUBMIT = "submit"
    RESOLVE = "resolve"  # submitting: look the transfer up, then the same key
    SETTLE = "settle"
    RETURN = "return"


_NEXT_STEP: dict[State, Step | None] = {
    State.PENDING: Step.RESERVE,
    State.RESERVED: Step.SUBMIT,
    State.SUBMITTING: Step.RESOLVE,
    State.SUBMITTED: Step.SETTLE,
    State.FAILED: Step.RETURN,
    State.PAID: None,
    State.RETURNED: None,
}


def next_step(state: str) -> Step | None:
    """The step that moves a payout in `state` forward; None once terminal."""
    return _NEXT_STEP[State(state)]


def payout_account(payee_address: str, seq: int) -> str:
    """`restaurants:001`, 3 -> `restaurants:001:payouts:003`."""
    if seq < 1:
        raise ValueError(f"payout sequence numbers start at 1, got {seq}")
    return f"{payee_address}:payouts:{seq:03d}"


def idempotency_key(payout_id: str) -> str:
    """The Stripe idempotency key of a payout's one transfer, stored before the call."""
    return f"transfer:{payout_id}"


def reversal_idempotency_key(payout_id: str) -> str:
    """The Stripe idempotency key of the staff reversal of a payout's transfer."""
    return f"transfer-reversal:{payout_id}"


def transfer_group(payout_id: str) -> str:
    """The transfer's `transfer_group`: what the lookup after an unknown outcome filters on."""
    return f"PAYOUT_{payout_id}"
