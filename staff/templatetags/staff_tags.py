"""Template filters of the dashboard: money in its asset's scale."""

from __future__ import annotations

from typing import Any

from django import template

from ledger.domain import format_amount

register = template.Library()


@register.filter
def money(amount: Any, asset: str = "USD/2") -> str:
    """`1250|money:"USD/2"` -> 'USD 12.50' (minor units in, the asset's scale out)."""
    if amount is None or amount == "":
        return "—"
    try:
        text = format_amount(asset, int(amount))
    except (TypeError, ValueError):
        return str(amount)
    return f"{asset.split('/')[0]} {text}"


@register.filter
def label(value: str) -> str:
    """`awaiting_approval` -> 'awaiting approval'."""
    return str(value).replace("_", " ")
