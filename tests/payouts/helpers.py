"""Helpers of the payouts tests: payees with a balance, the books, simulated crashes."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any

from ledger.selectors import balance_get, balances_get
from ledger.services import transaction_post
from payouts.models import Payout

ASSET = "USD/2"
_names = itertools.count(1)


class Crash(BaseException):
    """A simulated worker death: like SIGKILL, no `except Exception` sees it and the driver
    does not release its lease."""


def credit(address: str, amount: int, *, asset: str = ASSET) -> None:
    """What the marketplace's payment + split flows leave: the payee is owed `amount`, held
    in our Stripe balance."""
    transaction_post(
        postings=[
            {"source": "stripe:balance", "destination": address, "asset": asset, "amount": amount}
        ],
        overdraft={"stripe:balance": None},
        metadata={"flow": "test-credit"},
    )


def debit(address: str, amount: int, *, asset: str = ASSET) -> None:
    """A refund or dispute borne by the payee (it may go below zero, as the refund flow
    allows), money leaving our Stripe balance."""
    transaction_post(
        postings=[
            {"source": address, "destination": "stripe:balance", "asset": asset, "amount": amount}
        ],
        overdraft={address: None},
        metadata={"flow": "test-refund"},
    )


def make_payee(kind: str = "restaurant", *, balance: int = 0, onboard: bool = True) -> Any:
    from marketplace.services.parties import restaurant_onboard, rider_onboard

    name = f"{kind} {next(_names)}"
    payee: Any
    if kind == "restaurant":
        payee = restaurant_onboard(name=name, with_stripe_account=onboard)
    else:
        payee = rider_onboard(name=name, with_stripe_account=onboard)
    if balance:
        credit(payee.ledger_address, balance)
    return payee


def key(payee: Any) -> tuple[str, int]:
    return ("restaurant" if payee.LEDGER_PREFIX == "restaurants" else "rider", payee.pk)


def bal(address: str, asset: str = ASSET) -> int:
    return balance_get(address=address, asset=asset)


def assert_books(payees: Iterable[Any], *, paid_out: dict[str, int] | None = None) -> None:
    """The ledger adds up: every asset sums to zero, every payout account is empty once its
    payout is terminal, and what each payee still holds + what reached it equals what it was
    credited (paid_out: address -> expected amount paid)."""
    totals = balances_get(pattern="**").totals
    assert all(v == 0 for v in totals.values()), totals
    for payout in Payout.objects.filter(state__in=["paid", "returned"]):
        assert bal(payout.account, payout.asset) == 0, payout
    for payee in payees:
        paid = Payout.objects.filter(payee_address=payee.ledger_address, state="paid")
        total = sum(p.amount - p.amount_reversed for p in paid)
        if paid_out is not None and payee.ledger_address in paid_out:
            assert total == paid_out[payee.ledger_address], (payee, total)


def expire_leases() -> int:
    """Time passes: every lease has expired and every state is old enough to be swept."""
    from datetime import timedelta

    from django.utils import timezone

    long_ago = timezone.now() - timedelta(days=1)
    return Payout.objects.update(
        lease_until=long_ago,
        state_changed_at=long_ago,
        next_attempt_at=None,
    )


def drive_until_done(rounds: int = 20) -> None:
    """What the sweeper does over time: re-drive everything stuck until nothing is."""
    from payouts.services import payouts_drive
    from payouts.transitions import IN_FLIGHT

    for _ in range(rounds):
        ids = list(
            Payout.objects.filter(state__in=[str(s) for s in IN_FLIGHT]).values_list(
                "id", flat=True
            )
        )
        if not ids:
            return
        expire_leases()
        payouts_drive(ids=ids, actor="test-sweeper")
