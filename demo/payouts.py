"""The payouts stage of `manage.py demo`: at the end of the day, pay everyone out.

`demo_payouts(ctx, stdout)` takes the day's context (`demo.day.DemoContext`: the
app's URL and a staff token, the Stripe emulator, a rich console) and is tolerant of a context
with less in it (only an `emulator`, or nothing: it then uses the settings as they are):

1. one scheduling pass through the staff API (`POST /api/v1/payouts/run/`; the demo's staff
   user is given the `payouts.manage_payouts` permission), or through the service when the
   context has no API; Celery is eager, so each chunk's payouts are driven inline: reserved,
   transfer created at the emulator, settled, paid;
2. whatever is still in flight (an unknown Stripe outcome) is driven again, a few times;
3. the webhooks the transfers caused (`transfer.created`) are drained through the inbox;
4. a table of the payouts, and the payees held back (negative balance, below the minimum).
"""

from __future__ import annotations

from typing import IO, Any, cast

from django.conf import settings
from rich.console import Console
from rich.table import Table

from ledger.domain import format_amount
from payouts import conf, selectors
from payouts.models import Payout
from payouts.transitions import IN_FLIGHT


def _eager() -> None:
    from config.celery import app as celery_app

    settings.CELERY_TASK_ALWAYS_EAGER = True
    celery_app.conf.task_always_eager = True
    celery_app.conf.task_eager_propagates = True


def _grant_staff(token: str) -> None:
    from django.contrib.auth.models import Permission
    from rest_framework.authtoken.models import Token

    found = Token.objects.select_related("user").filter(key=token).first()
    if found is not None:
        found.user.user_permissions.add(Permission.objects.get(codename="manage_payouts"))


def _run_pass(ctx: Any, console: Console) -> dict[str, Any]:
    api = getattr(ctx, "api", None)
    token = getattr(ctx, "token", None)
    if callable(api) and token:
        try:
            _grant_staff(token)
            return dict(api("POST", "payouts/run/", {}))
        except Exception as exc:  # fall back to the service: the demo must go on
            console.print(f"[yellow]payouts API unavailable ({exc}); running the pass here[/]")
    from payouts.services import payouts_schedule

    result = payouts_schedule(actor="demo")
    return {**result.as_dict(), "payout_ids": [str(i) for i in result.created]}


def _money(asset: str, amount: int) -> str:
    return f"{format_amount(asset, amount)} {asset.split('/')[0]}"


def demo_payouts(ctx: Any, stdout: Any) -> None:
    from payouts.services import payouts_drive

    console = getattr(ctx, "console", None) or Console(file=cast(IO[str], stdout), width=120)
    emulator = getattr(ctx, "emulator", None)
    if emulator is not None and getattr(emulator, "url", None):
        settings.STRIPE_API_BASE = emulator.url
    _eager()
    errors = getattr(ctx, "errors", None)

    with console.status("paying restaurants and riders out"):
        summary = _run_pass(ctx, console)
        ids = summary.get("payout_ids") or []
        for _ in range(5):
            left = list(
                Payout.objects.filter(
                    pk__in=ids, state__in=[str(s) for s in IN_FLIGHT]
                ).values_list("id", flat=True)
            )
            if not left:
                break
            payouts_drive(ids=left, actor="demo")
        settle = getattr(ctx, "settle", None)
        if callable(settle):
            settle()  # the transfer.created webhooks, through the inbox

    payouts = list(Payout.objects.filter(pk__in=ids).order_by("payee_kind", "payee_id"))
    names = {
        p.key: p.name
        for p in selectors.payees_list(payee_ids=[(x.payee_kind, x.payee_id) for x in payouts])
    }
    table = Table(title="Payouts at the end of the day (Stripe Connect transfers)")
    for column in ("payee", "payout account", "amount", "state", "transfer"):
        table.add_column(column, justify="right" if column == "amount" else "left")
    totals: dict[str, dict[str, int]] = {}
    for p in payouts:
        state = p.state if p.state == "paid" else f"[red]{p.state}[/red]"
        table.add_row(
            f"{names.get((p.payee_kind, p.payee_id), '?')} ({p.payee_kind})",
            p.account,
            _money(p.asset, p.amount),
            state,
            p.transfer_id or "-",
        )
        by_state = totals.setdefault(p.state, {})
        by_state[p.asset] = by_state.get(p.asset, 0) + p.amount
    console.print(table)
    console.print(
        "payouts: "
        + (
            "; ".join(
                f"{state} {', '.join(_money(a, v) for a, v in sorted(amounts.items()))}"
                for state, amounts in sorted(totals.items())
            )
            or "none"
        )
        + f"; skipped {summary.get('skipped_in_flight', 0)} in flight, "
        f"{summary.get('skipped_held', 0)} held, "
        f"{summary.get('skipped_below_minimum', 0)} below the minimum"
    )
    held_back = _held_back()
    if held_back:
        held = Table(title="Held back (owed nothing now, or a debt not yet covered)")
        for column in ("payee", "ledger balance", "why"):
            held.add_column(column)
        for name, balance, why in held_back:
            held.add_row(name, balance, why)
        console.print(held)
    if emulator is not None and hasattr(emulator, "transfer_counts"):
        counts = emulator.transfer_counts()
        duplicates = sum(n - 1 for n in counts.values() if n > 1)
        console.print(
            f"transfers at Stripe for these payouts: "
            f"{sum(counts.get(str(p.pk), 0) for p in payouts)}, duplicates: {duplicates}"
        )
        if duplicates and isinstance(errors, list):
            errors.append(f"{duplicates} duplicate payout transfer(s)")
    not_paid = [p for p in payouts if p.state != "paid"]
    if not_paid and isinstance(errors, list):
        errors.append(f"{len(not_paid)} payout(s) not paid: {[str(p.pk) for p in not_paid]}")


def _held_back() -> list[tuple[str, str, str]]:
    """Payees that got no payout: negative (a refund or dispute they bear, netted from future
    earnings), held, or owed less than the minimum."""
    payees = selectors.payees_list()
    busy = selectors.in_flight_keys()
    balances = selectors.balances_of(p.address for p in payees)
    rows = []
    for payee in payees:
        balance = balances.get(payee.address, {}).get(payee.asset, 0)
        if payee.key in busy or balance == 0:
            continue
        if payee.on_hold:
            why = "on hold"
        elif balance < 0:
            why = "negative: blocked until covered"
        elif balance < conf.min_amount(payee.asset):
            why = "below the minimum payout"
        else:
            continue
        rows.append((f"{payee.name} ({payee.kind})", _money(payee.asset, balance), why))
    return rows
