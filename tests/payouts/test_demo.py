"""The payouts stage of the demo, with the least context it accepts (only an emulator)."""

from __future__ import annotations

from io import StringIO
from types import SimpleNamespace

import pytest

from demo.payouts import demo_payouts
from payouts.models import Payout
from stripe_emulator import EmulatorServer
from tests.payouts.helpers import debit, make_payee

pytestmark = pytest.mark.django_db


def test_demo_stage_pays_everyone_and_prints_the_table(emulator: EmulatorServer) -> None:
    restaurant = make_payee("restaurant", balance=4_321)
    owes = make_payee("rider", balance=0)
    debit(owes.ledger_address, 250)
    out = StringIO()
    ctx = SimpleNamespace(emulator=emulator, errors=[])
    demo_payouts(ctx, out)
    text = out.getvalue()
    assert Payout.objects.get(payee_address=restaurant.ledger_address).state == "paid"
    assert "Payouts at the end of the day" in text and "43.21 USD" in text
    assert "negative: blocked until covered" in text and "-2.50 USD" in text
    assert "duplicates: 0" in text
    assert ctx.errors == []
