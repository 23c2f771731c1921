"""The reconciliation stage of `manage.py demo` (called by the marketplace demo at the end of
its day as `demo_reconciliation(ctx, stdout)`).

1. The evening: the webhook endpoint loses a few payments. The emulator's chaos switch drops
   every delivery (`drop_rate=1`) while a few more orders are placed and paid, then it is
   switched back. Stripe has those charges; the ledger does not.
2. The nightly run over the day (the emulator's clock): import with auto-paging and
   `expand=data.source`, match in SQL, book missing fees, compare `stripe:balance` with
   Stripe's balance; the report is printed.
3. Staff apply the safe repairs (the dropped payment webhooks are fetched from Stripe and
   replayed through the inbox; any fee still missing is booked), and the window runs again:
   a new run, which says what changed, and which matches everything.

`ctx` is `demo.day.DemoContext` (its `emulator`, `console`, `api()`, `gateway()`,
`restaurants`, `errors`). `RECONCILIATION_DEMO_DROPPED` (environment, default 3) sets how many
payments lose their webhooks; 0 skips step 1.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

from rich.console import Console

from reconciliation.models import ReconciliationRun
from reconciliation.reports import console_for, render_run, run_progress
from reconciliation.services import reconciliation_run, run_repairs_apply


def _console(ctx: Any, stdout: Any) -> Console:
    console = getattr(ctx, "console", None)
    return console if isinstance(console, Console) else console_for(stdout)


def _drop_some_payment_webhooks(ctx: Any, console: Console, count: int) -> list[str]:
    """Place and pay `count` orders while the emulator drops every webhook delivery."""
    emulator = ctx.emulator
    restaurants = getattr(ctx, "restaurants", None) or []
    if count <= 0 or not restaurants or not hasattr(ctx, "api"):
        return []
    previous = emulator.chaos
    emulator.set_chaos(drop_rate=1.0, duplicate_rate=0.0)
    charges: list[str] = []
    try:
        for index in range(count):
            restaurant = restaurants[index % len(restaurants)]
            created = ctx.api(
                "POST",
                "orders/",
                {
                    "restaurant": restaurant["id"],
                    "subtotal": 1850 + 275 * index,
                    "delivery_fee": 299,
                    "customer_email": f"late-diner{index}@example.com",
                },
            )
            intent_id = created["payment_intent"]["id"]
            intent = ctx.gateway().payment_intent_confirm(
                payment_intent_id=intent_id,
                payment_method="pm_card_visa",
                idempotency_key=f"confirm:{intent_id}",
            )
            charges.append(str(intent.get("latest_charge") or ""))
        emulator.settle(10)  # the late charges' balance transactions too (async capture)
    finally:
        emulator.set_chaos(previous)
    console.print(
        f"The evening: {len(charges)} late order(s) paid while the webhook endpoint lost every "
        f"delivery (emulator chaos drop_rate=1): {', '.join(charges)}"
    )
    return charges


def _window(emulator: Any) -> tuple[datetime, datetime]:
    """The day by the emulator's clock: from the start of the UTC day of its first balance
    transaction to just after now."""
    now = int(emulator.state.now())
    created = [int(t["created"]) for t in emulator.state.objects("balance_transaction", "")]
    first = min(created, default=now)
    start = datetime.fromtimestamp(first, tz=UTC).replace(hour=0, minute=0, second=0)
    return start, datetime.fromtimestamp(now + 1, tz=UTC)


def _run(start: datetime, end: datetime, console: Console) -> ReconciliationRun:
    with run_progress(console) as progress:
        return reconciliation_run(
            window_start=start, window_end=end, trigger="demo", progress=progress
        )


def demo_reconciliation(ctx: Any, stdout: Any) -> ReconciliationRun:
    """Reconcile the demo day, repair what is safe, reconcile again; returns the last run."""
    console = _console(ctx, stdout)
    errors = getattr(ctx, "errors", None)
    console.rule("Reconciliation: Stripe balance transactions against the ledger")
    dropped = _drop_some_payment_webhooks(
        ctx, console, int(os.environ.get("RECONCILIATION_DEMO_DROPPED", "3"))
    )
    start, end = _window(ctx.emulator)

    first = _run(start, end, console)
    render_run(console, first)

    report = run_repairs_apply(run=first)
    console.print(
        f"Applied {report.applied} safe repair(s)"
        + (f", {report.failed} failed" if report.failed else "")
        + "; running the window again."
    )
    for note in report.notes[:20]:
        console.print(f"  {note}")
    ctx.emulator.settle(10)

    second = _run(start, end, console)
    render_run(console, second, problems_limit=10)
    money = (
        second.items.exclude(outcome__in=["matched", "awaiting_stripe"])
        .exclude(repair_status="applied")
        .exclude(difference=0)
        .count()
    )
    if second.problems > money:
        console.print(
            f"{second.problems - money} item(s) left for review: the money on stripe:balance "
            "matches Stripe, the booking does not follow the reconciliation contract (see above)."
        )
    if money and errors is not None:
        errors.append(
            f"reconciliation: {money} item(s) still differ in money after the repairs "
            f"(run {second.pk}; manage.py reconcile --run {second.pk})"
        )
    unexplained = {
        asset: t.get("unexplained")
        for asset, t in (second.totals or {}).items()
        if t.get("unexplained")
    }
    if unexplained and errors is not None:
        errors.append(f"reconciliation: unexplained drift {unexplained}")
    _demo_report(second, console)
    if dropped and errors is not None:
        still = [c for c in dropped if c and not _matched(second, c)]
        if still:
            errors.append(f"reconciliation: dropped payment(s) not repaired: {still}")
    return second


def _matched(run: ReconciliationRun, charge: str) -> bool:
    return run.items.filter(key=charge, outcome="matched").exists()


__all__ = ["demo_reconciliation"]


def _demo_report(run: ReconciliationRun, console: Any) -> None:
    """Deliver the nightly report of the demo's run as the beat task would, through the
    configured e-mail backend (a file under var/mail/ by default), and say where it went."""
    from django.conf import settings

    from reconciliation.delivery import recipients, report_message

    to = recipients() or ["finance@demo.localhost"]
    try:
        report_message(run, to=to).send(fail_silently=False)
    except Exception as exc:  # the demo's books are what matters; say why and go on
        console.print(f"[yellow]The nightly report e-mail could not be written: {exc}[/yellow]")
        return
    backend = str(settings.EMAIL_BACKEND).rsplit(".", 2)[-2]
    where = getattr(settings, "EMAIL_FILE_PATH", "") if backend == "filebased" else backend
    console.print(
        f"Nightly report of run {run.pk} e-mailed to {', '.join(to)}: written to {where} "
        "(HTML body + the run's CSV attached; RECONCILIATION_REPORT_RECIPIENTS, EMAIL_URL)."
    )
