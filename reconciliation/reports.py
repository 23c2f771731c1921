"""Human-readable reports of a run (rich tables) and the progress display of the command.

Used by `manage.py reconcile` and the demo; the API and CSV export read `selectors`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from reconciliation.matching import PROBLEMS, Outcome
from reconciliation.models import ReconciliationItem, ReconciliationRun
from reconciliation.selectors import outcome_label, run_summary

STAGES = {
    "import": "Importing balance transactions",
    "match": "Matching against the ledger",
    "suggest": "Suggesting repairs",
    "fees": "Booking missing Stripe fees",
    "totals": "Comparing balances",
}


def console_for(stream: Any) -> Console:
    """A console writing to a command's stdout; wide when not a terminal (logs, tests)."""
    console = Console(file=stream, highlight=False, soft_wrap=False)
    if not console.is_terminal:
        console = Console(file=stream, highlight=False, width=160, soft_wrap=False)
    return console


@contextmanager
def run_progress(console: Console) -> Iterator[Any]:
    """A rich progress display; yields the `progress(stage, done, total, detail)` callback."""
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        tasks: dict[str, Any] = {}

        def update(stage: str, done: int, total: int | None, detail: str) -> None:
            if stage not in tasks:
                for other in tasks.values():  # a new stage means the previous ones are done
                    task = progress.tasks[other]
                    progress.update(other, completed=task.total or 1, total=task.total or 1)
                tasks[stage] = progress.add_task(
                    STAGES.get(stage, stage), total=total, detail=detail
                )
            progress.update(tasks[stage], completed=done, total=total, detail=detail)

        yield update
        for task_id in tasks.values():
            task = progress.tasks[task_id]
            progress.update(task_id, completed=task.total or 1, total=task.total or 1)


def _money(value: Any) -> str:
    return "" if value is None else f"{int(value):,}"


def render_run(console: Console, run: ReconciliationRun, *, problems_limit: int = 20) -> None:
    """Summary, totals, problems and changes of a run, as tables."""
    summary = run_summary(run=run)
    window = summary["window"]
    imported = summary["imported"] or {}
    console.print(
        f"[bold]Reconciliation run {run.pk}[/bold]  window [{window['start']}, {window['end']})"
        f"  status {run.status}  trigger {run.trigger}"
    )
    if imported:
        console.print(
            f"Imported {imported.get('seen', 0)} balance transactions: "
            f"{imported.get('created', 0)} new, {imported.get('updated', 0)} changed at Stripe, "
            f"{imported.get('unchanged', 0)} unchanged. Matching took {run.match_seconds} s."
        )
    if run.error:
        console.print(f"[red]Failed: {run.error}[/red]")

    table = Table(title="Outcomes", show_lines=False)
    for column in ("outcome", "items", "asset", "Stripe net", "ledger net", "difference"):
        table.add_column(column, justify="left" if column in ("outcome", "asset") else "right")
    for outcome in Outcome:
        count = summary["counts"].get(str(outcome), 0)
        per_asset = (run.amounts or {}).get(str(outcome)) or {"": {}}
        for i, (asset, figures) in enumerate(sorted(per_asset.items())):
            table.add_row(
                outcome_label(outcome) if i == 0 else "",
                str(count) if i == 0 else "",
                asset,
                _money(figures.get("stripe_net")),
                _money(figures.get("ledger_net")),
                _money(figures.get("difference")),
                style="red" if outcome in PROBLEMS and count else None,
            )
    console.print(table)

    if summary["totals"]:
        totals = Table(title="Totals: ledger stripe:balance against Stripe's balance")
        for column in (
            "asset",
            "Stripe available",
            "Stripe pending",
            "Stripe total",
            "ledger",
            "drift",
            "explained by items",
            "unexplained",
        ):
            totals.add_column(column, justify="left" if column == "asset" else "right")
        for asset, t in sorted(summary["totals"].items()):
            totals.add_row(
                asset,
                _money(t.get("stripe_available")),
                _money(t.get("stripe_pending")),
                _money(t.get("stripe_total")),
                _money(t.get("ledger")),
                _money(t.get("drift")),
                _money(t.get("explained")),
                _money(t.get("unexplained")),
                style="red" if t.get("drift") else None,
            )
        console.print(totals)

    problems = (
        ReconciliationItem.objects.filter(run=run, outcome__in=[str(p) for p in PROBLEMS])
        .exclude(repair_status=ReconciliationItem.RepairStatus.APPLIED)
        .order_by("outcome", "id")
    )
    shown = list(problems[:problems_limit])
    repaired = ReconciliationItem.objects.filter(
        run=run, repair_status=ReconciliationItem.RepairStatus.APPLIED
    ).count()
    if shown:
        listing = Table(title=f"Open problems ({summary['problems']})", show_lines=True)
        for column in ("outcome", "object", "asset", "difference", "suggested action", "repair"):
            listing.add_column(column, overflow="fold")
        for item in shown:
            repair = (item.repair or {}).get("action", "")
            listing.add_row(
                outcome_label(item.outcome),
                item.key,
                item.asset,
                _money(item.difference),
                item.suggested_action,
                f"{repair} ({'safe' if item.safe else 'review'}, {item.repair_status})"
                if repair
                else "",
            )
        console.print(listing)
        if summary["problems"] > len(shown):
            console.print(f"... and {summary['problems'] - len(shown)} more (see --csv).")
    if repaired:
        console.print(f"Repairs applied on this run's items: {repaired}.")
    if summary["safe_repairs_pending"]:
        console.print(
            f"{summary['safe_repairs_pending']} safe repair(s) pending: "
            f"`manage.py reconcile --run {run.pk} --repair` applies them and runs the window again."
        )

    changes = summary["changes"] or {}
    if changes.get("previous_run"):
        if changes.get("identical"):
            console.print(
                f"Compared with run {changes['previous_run']}: nothing changed "
                f"({changes.get('unchanged', 0)} items)."
            )
        else:
            parts = [f"{n} {k}" for k, n in changes.get("changed", {}).items()]
            parts += [f"{n} new {k}" for k, n in changes.get("new", {}).items()]
            parts += [f"{n} gone {k}" for k, n in changes.get("gone", {}).items()]
            console.print(
                f"Compared with run {changes['previous_run']}: {', '.join(parts)}; "
                f"{changes.get('unchanged', 0)} unchanged."
            )
    verdict = "[green]clean[/green]" if summary["clean"] else "[red]needs attention[/red]"
    console.print(f"Result: {verdict}")
