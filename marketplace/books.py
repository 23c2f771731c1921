"""The books as readable rich tables: balances by account group, the balance sheet, what is
owed, the defaulting risk and per-campaign figures, and the zero-sum check. Used by
`manage.py demo` and `manage.py risk`."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

from ledger.domain import format_amount
from ledger.selectors import balance_sheet_get, balances_get, ledger_invariants_check
from marketplace.selectors import Risk, owed_get, risk_get

GROUPS = (
    ("stripe:balance", "Stripe balance"),
    ("bank:*", "bank"),
    ("payments:*", "payments in transit"),
    ("orders:*", "open orders"),
    ("orders:*:coupon", "coupon reservations"),
    ("restaurants:*", "restaurants"),
    ("restaurants:*:payouts:*", "restaurant payouts in flight"),
    ("riders:*", "riders"),
    ("riders:*:payouts:*", "rider payouts in flight"),
    ("coupons:*", "coupon campaigns"),
    ("platform:*", "platform"),
)


def _money(asset: str, amount: int) -> str:
    text = format_amount(asset, amount)
    return f"[red]{text}[/red]" if amount < 0 else text


def balances_table(*, asset: str = "USD/2") -> Table:
    table = Table(title=f"Balances by account group ({asset}; ledger sign: input - output)")
    table.add_column("group")
    table.add_column("accounts", justify="right")
    table.add_column("positive", justify="right")
    table.add_column("negative", justify="right")
    table.add_column("balance", justify="right")
    for pattern, label in GROUPS:
        if pattern.startswith("platform"):
            continue
        accounts = balances_get(pattern=pattern, asset=asset).accounts
        values = [by.get(asset, 0) for by in accounts.values()]
        table.add_row(
            f"{label}  [dim]{pattern}[/dim]",
            str(sum(1 for v in values if v)),
            _money(asset, sum(v for v in values if v > 0)),
            _money(asset, sum(v for v in values if v < 0)),
            _money(asset, sum(values)),
        )
    platform = balances_get(pattern="platform:*", asset=asset).accounts
    for address, by in sorted(platform.items()):
        table.add_row(f"  [dim]{address}[/dim]", "1", "", "", _money(asset, by.get(asset, 0)))
    return table


def balance_sheet_tables() -> list[Table]:
    tables = []
    for sheet in balance_sheet_get().assets:
        table = Table(
            title=f"Balance sheet {sheet.asset} "
            f"({'balanced' if sheet.balanced else '[red]NOT BALANCED[/red]'})"
        )
        table.add_column("section")
        table.add_column("accounts", justify="right")
        table.add_column("amount", justify="right")
        counts: dict[str, int] = defaultdict(int)
        for line in sheet.lines:
            counts[line.type] += 1
        big = {}
        for line in sheet.lines:
            if line.type in (
                "asset",
                "revenue",
                "expense",
                "equity",
            ) and not line.address.startswith(
                ("orders:", "restaurants:", "riders:", "payments:", "coupons:")
            ):
                big[line.address] = line
        for section, total in sheet.totals.items():
            table.add_row(f"[bold]{section}[/bold]", str(counts.get(section, 0)), sheet.fmt(total))
            for line in sheet.lines:
                if line.type == section and line.address in big:
                    table.add_row(f"  [dim]{line.address}[/dim]", "", sheet.fmt(line.amount))
        table.add_row("net income (revenue - expense)", "", sheet.fmt(sheet.net_income))
        table.add_row(
            "[bold]assets[/bold] = liabilities + equity + net income",
            "",
            f"{sheet.fmt(sheet.totals.get('asset', 0))} = "
            f"{sheet.fmt(sheet.liabilities_and_equity)}",
        )
        tables.append(table)
    return tables


def owed_table(*, asset: str = "USD/2") -> Table:
    owed = owed_get(asset=asset)
    table = Table(title=f"What is owed to whom ({asset})")
    table.add_column("group")
    table.add_column("accounts", justify="right")
    table.add_column("owed by the platform", justify="right")
    table.add_column("owed to the platform", justify="right")
    for group in owed.groups:
        table.add_row(
            group.name + ("" if group.counts_for_risk else " [dim](not owed)[/dim]"),
            str(group.accounts),
            format_amount(asset, group.owed),
            format_amount(asset, group.receivable),
        )
    table.add_row(
        "[bold]total[/bold]",
        "",
        format_amount(asset, owed.owed),
        format_amount(asset, owed.receivable),
    )
    return table


def risk_tables(risk: Risk) -> list[Table]:
    table = Table(title=f"Defaulting risk ({risk.asset})")
    table.add_column("figure")
    table.add_column("amount", justify="right")
    table.add_row("Stripe balance (ledger)", risk.fmt(risk.stripe_balance))
    table.add_row("owed: payees, open orders, payouts in flight", risk.fmt(risk.owed_total))
    table.add_row("receivables (negative payee balances)", risk.fmt(risk.owed.receivable))
    table.add_row("losses to date (refunds at loss, disputes)", risk.fmt(risk.losses))
    table.add_row("open disputes", str(risk.open_disputes))
    coverage = "n/a" if risk.coverage is None else f"{risk.coverage:.1%}"
    table.add_row("coverage", coverage)
    verdict = (
        "[green]covered[/green]"
        if risk.covered
        else f"[red]SHORT by {risk.fmt(risk.shortfall)}: top up before paying out[/red]"
    )
    table.add_row("verdict", verdict)
    campaigns = Table(title="Coupon campaigns: marketing spend and losses")
    for column in ("code", "funded", "remaining", "reserved", "spent", "paid orders", "losses"):
        campaigns.add_column(column, justify="left" if column == "code" else "right")
    for c in risk.campaigns:
        campaigns.add_row(
            c.code + (" (paused)" if c.paused else ""),
            format_amount(c.asset, c.funded),
            format_amount(c.asset, c.remaining),
            format_amount(c.asset, c.reserved),
            format_amount(c.asset, c.spent),
            str(c.orders),
            format_amount(c.asset, c.losses),
        )
    return [table, campaigns]


@dataclass(frozen=True)
class ZeroSum:
    ok: bool
    sums: dict[str, int]
    mismatches: int


def zero_sum_check() -> ZeroSum:
    """Per asset, every balance sums to zero; every balance equals its postings."""
    invariants = ledger_invariants_check()
    totals = balances_get(pattern="**").totals
    sums = {asset: total for asset, total in totals.items()}
    sums.update(invariants.asset_sums)
    ok = not invariants.asset_sums and not invariants.balance_mismatches
    return ZeroSum(ok=ok, sums=sums, mismatches=len(invariants.balance_mismatches))


def zero_sum_table(check: ZeroSum) -> Table:
    table = Table(title="Every asset sums to zero")
    table.add_column("asset")
    table.add_column("sum of all balances", justify="right")
    table.add_column("check")
    for asset, total in sorted(check.sums.items()):
        table.add_row(asset, str(total), "[green]ok[/green]" if total == 0 else "[red]FAIL[/red]")
    if check.mismatches:
        table.add_row("balance rows vs postings", str(check.mismatches), "[red]FAIL[/red]")
    return table


def books_print(console: Console, *, asset: str = "USD/2") -> bool:
    """Print the books; True when they balance (zero sums and a balanced sheet)."""
    console.print(balances_table(asset=asset))
    sheets = balance_sheet_tables()
    for table in sheets:
        console.print(table)
    console.print(owed_table(asset=asset))
    for table in risk_tables(risk_get(asset=asset)):
        console.print(table)
    check = zero_sum_check()
    console.print(zero_sum_table(check))
    return check.ok and balance_sheet_get().balanced
