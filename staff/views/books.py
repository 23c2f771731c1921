"""The books: balance sheet as of a date (balanced, or loudly not), trial balance, income
statement for a period, what is owed to whom; each also as CSV (`?format=csv`). Read from
`ledger.selectors.balance_sheet_get` and `marketplace.selectors.owed_get`."""

from __future__ import annotations

from datetime import datetime
from html import escape
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.safestring import SafeString, mark_safe

from ledger import conf as ledger_conf
from ledger.domain import DEBIT_NORMAL, Chart, format_amount
from ledger.models import Account
from ledger.selectors import AssetSheet, balance_sheet_get, volumes_get
from marketplace.selectors import owed_get
from staff.views.base import StaffView
from staff.views.finance_base import FINANCE_READ, InputError, csv_response, when_parse


def _at(request: HttpRequest) -> datetime | None:
    return when_parse(request.GET.get("at"), name="As of", end_of_day=True)


def _error_page(request: HttpRequest, template: str, message: str) -> HttpResponse:
    return render(request, template, {"error": message}, status=400)


class BooksView(StaffView):
    """Balance sheet + trial balance (one page, two tables)."""

    permissions = FINANCE_READ

    def get(self, request: HttpRequest) -> HttpResponse:
        try:
            at = _at(request)
        except InputError as exc:
            return _error_page(request, "staff/books.html", str(exc))
        sheet = balance_sheet_get(at=at)  # now or as of `at`, from the balance checkpoints
        if request.GET.get("format") == "csv":
            rows = [
                [
                    s.asset,
                    line.type,
                    line.address,
                    format_amount(s.asset, line.amount),
                    format_amount(s.asset, line.debit),
                    format_amount(s.asset, line.credit),
                ]
                for s in sheet.assets
                for line in s.lines
            ]
            for s in sheet.assets:
                rows.append([s.asset, "total", "assets", s.fmt(s.totals.get("asset", 0)), "", ""])
                rows.append(
                    [
                        s.asset,
                        "total",
                        "liabilities+equity+net income",
                        s.fmt(s.liabilities_and_equity),
                        "",
                        "",
                    ]
                )
                rows.append(
                    [s.asset, "check", "balanced" if s.balanced else "NOT BALANCED", "", "", ""]
                )
            name = f"balance-sheet-{at:%Y-%m-%d}.csv" if at else "balance-sheet.csv"
            return csv_response(
                name, ["asset", "type", "account", "amount", "debit", "credit"], rows
            )
        return render(
            request,
            "staff/books.html",
            {
                "sheet": sheet,
                "tables": [(s, _sheet_rows(s)) for s in sheet.assets],
                "at": at,
                "at_text": request.GET.get("at", ""),
            },
        )


def _sheet_rows(sheet: AssetSheet) -> list[SafeString]:
    """One table row per line (type, account link, amount, debit, credit), escaped and built
    here: a sheet has a line per payee (thousands), and a URL reversal, three filters and a
    dozen variable lookups per line in the template cost ten times the query."""
    url = reverse("staff:ledger-account", args=["ADDRESS"])  # addresses need no quoting
    unit = sheet.asset.split("/")[0]

    def money(amount: int) -> str:
        return f"{unit} {format_amount(sheet.asset, amount)}" if amount else ""

    # html.escape, not format_html: the same escaping at a fifth of the cost per call
    return [
        mark_safe(  # noqa: S308 (every value escaped)
            f"<tr><td>{escape(line.type)}</td><td><a href="
            f'"{escape(url.replace("ADDRESS", line.address))}"><code>{escape(line.address)}'
            f'</code></a></td><td class="num">{escape(f"{unit} {format_amount(sheet.asset, line.amount)}")}</td>'
            f'<td class="num">{escape(money(line.debit))}</td>'
            f'<td class="num">{escape(money(line.credit))}</td></tr>'
        )
        for line in sheet.lines
    ]


INCOME_TYPES = ("revenue", "expense")


def income_statement(*, start: datetime | None, end: datetime | None) -> list[dict[str, Any]]:
    """Per asset: each revenue/expense account's movement over [start, end] (the chart's
    sign: revenue credit-normal, expense debit-normal), and the net income. Volumes over a
    period come from the postings' (account, asset, timestamp) indexes: a handful of accounts."""
    chart = Chart.from_setting(ledger_conf.get("LEDGER_CHART_OF_ACCOUNTS"))
    addresses = [
        a
        for a in Account.objects.filter(address__startswith="platform:").values_list(
            "address", flat=True
        )
        if chart.classify(a) in INCOME_TYPES
    ]
    from ledger.selectors import account_balances_map

    ids = dict(Account.objects.filter(address__in=addresses).values_list("address", "id"))
    assets_of = account_balances_map(account_ids=list(ids.values()))
    per_asset: dict[str, dict[str, Any]] = {}
    for address in sorted(addresses):
        kind = chart.classify(address) or ""
        for asset in sorted(assets_of.get(ids[address], {})):
            v = volumes_get(address=address, asset=asset, start=start, end=end)
            amount = -v.balance if kind in DEBIT_NORMAL else v.balance
            sheet = per_asset.setdefault(
                asset, {"asset": asset, "lines": [], "revenue": 0, "expense": 0}
            )
            sheet["lines"].append({"address": address, "type": kind, "amount": amount})
            sheet[kind] += amount
    for sheet in per_asset.values():
        sheet["net"] = sheet["revenue"] - sheet["expense"]
    return [per_asset[a] for a in sorted(per_asset)]


class IncomeView(StaffView):
    permissions = FINANCE_READ

    def get(self, request: HttpRequest) -> HttpResponse:
        try:
            start = when_parse(request.GET.get("start"), name="From")
            end = when_parse(request.GET.get("end"), name="To", end_of_day=True)
            if start and end and end <= start:
                raise InputError("The period is empty: “To” must be after “From”.")
        except InputError as exc:
            return _error_page(request, "staff/books_income.html", str(exc))
        statement = income_statement(start=start, end=end)
        if request.GET.get("format") == "csv":
            rows = [
                [
                    s["asset"],
                    line["type"],
                    line["address"],
                    format_amount(s["asset"], line["amount"]),
                ]
                for s in statement
                for line in s["lines"]
            ] + [
                [s["asset"], "net income", "", format_amount(s["asset"], s["net"])]
                for s in statement
            ]
            return csv_response(
                "income-statement.csv", ["asset", "type", "account", "amount"], rows
            )
        return render(
            request,
            "staff/books_income.html",
            {"statement": statement, "start": start, "end": end, "q": request.GET},
        )


class OwedView(StaffView):
    permissions = FINANCE_READ

    def get(self, request: HttpRequest) -> HttpResponse:
        try:
            at = _at(request)
        except InputError as exc:
            return _error_page(request, "staff/books_owed.html", str(exc))
        asset = "USD/2"
        owed = owed_get(asset=asset, at=at)
        if request.GET.get("format") == "csv":
            rows = [
                [
                    g.name,
                    g.accounts,
                    format_amount(asset, g.owed),
                    format_amount(asset, g.receivable),
                    format_amount(asset, g.net),
                    "yes" if g.counts_for_risk else "no",
                ]
                for g in owed.groups
            ]
            return csv_response(
                "owed.csv",
                ["group", "accounts", "owed", "receivable", "net", "counts_for_risk"],
                rows,
            )
        return render(
            request,
            "staff/books_owed.html",
            {"owed": owed, "asset": asset, "at": at, "at_text": request.GET.get("at", "")},
        )
