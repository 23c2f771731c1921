"""`manage.py payouts` and the Celery tasks (eager here; a real worker in test_worker_kill)."""

from __future__ import annotations

import json
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from payouts import tasks
from payouts.models import Payout
from payouts.services import payouts_enqueue, payouts_schedule
from stripe_emulator import EmulatorServer
from tests.payouts.helpers import expire_leases, key, make_payee

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command("payouts", *args, stdout=out)
    return out.getvalue()


def test_run_sync_then_status_and_show(emulator: EmulatorServer) -> None:
    payees = [make_payee("restaurant", balance=1_000 * (i + 1)) for i in range(3)]
    output = run("run", "--sync")
    assert "3 payout(s) created (60.00 USD) from 3 candidate(s)" in output
    assert "driven: 3 paid" in output
    assert "scheduling" in output  # the progress bar
    status = json.loads(run("status", "--json"))
    assert status["states"]["paid"] == 3 and status["stuck"] == []
    assert status["amounts"]["paid"] == {"USD/2": 6_000}
    table = run("status")
    assert "60.00 USD" in table and "needs attention: 0" in table
    payout = Payout.objects.get(payee_address=payees[0].ledger_address)
    shown = run("show", str(payout.pk))
    assert "paid" in shown and payout.transfer_id in shown and "submitted" in shown


def test_run_no_drive_then_sweep(emulator: EmulatorServer) -> None:
    make_payee("rider", balance=500)
    assert "1 payout(s) created" in run("run", "--no-drive", "--kind", "rider")
    assert Payout.objects.get().state == "reserved"
    status = json.loads(run("status", "--json"))
    assert status["states"]["reserved"] == 1
    expire_leases()
    assert "1 payout(s) re-driven" in run("sweep")
    assert Payout.objects.get().state == "paid"


def test_drive_command(emulator: EmulatorServer) -> None:
    payee = make_payee("rider", balance=500)
    payouts_schedule(payee_ids=[key(payee)], drive=False)
    payout = Payout.objects.get()
    result = json.loads(run("drive", str(payout.pk)))
    assert result["paid"] == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("show", "nope"), "payout nope does not exist"),
        (("drive", "01a1ffb5-cce5-7d89-92e3-93e4568343a9"), "does not exist"),
        (("run", "--min-amount", "0"), "--min-amount must be at least 1"),
    ],
)
def test_command_errors_are_one_line(args: tuple[str, ...], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        run(*args)


def test_tasks(emulator: EmulatorServer) -> None:
    payee = make_payee("restaurant", balance=800)
    result = tasks.payouts_schedule.delay().get()
    assert result["created"] >= 1
    assert Payout.objects.get(payee_address=payee.ledger_address).state == "paid"
    assert tasks.payouts_sweep.delay().get() == 0


def test_a_lost_broker_never_loses_a_payout(emulator: EmulatorServer, monkeypatch: Any) -> None:
    payee = make_payee("restaurant", balance=800)

    def broker_down(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("redis is down")

    monkeypatch.setattr(tasks.payouts_drive, "apply_async", broker_down)
    payouts_schedule(payee_ids=[key(payee)])
    payout = Payout.objects.get()
    assert payout.state == "reserved"
    assert payouts_enqueue([payout.pk]) == 0  # logged, not raised
    monkeypatch.undo()
    expire_leases()
    assert tasks.payouts_sweep.delay().get() == 1
    payout.refresh_from_db()
    assert payout.state == "paid"
