"""What every dashboard page shares: sign-in, the named-permission check on the server, the
403/404 pages, and turning the services' errors into a message on the page (never a 500)."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import render
from django.views import View

from ledger.domain import asset_scale


class StaffView(View):
    """A page for signed-in staff holding every permission in `permissions` (checked on
    every request, whatever the method; a hidden button is not a check). A user without
    them gets the 403 page naming what is missing."""

    permissions: tuple[str, ...] = ()

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        user = request.user
        if not user.is_authenticated:
            return redirect_to_login(request.get_full_path(), "staff:login")
        if not (user.is_active and (user.is_staff or user.is_superuser)):
            return forbidden(request, "This account is not a staff account.")
        missing = [p for p in self.permissions if not user.has_perm(p)]
        if missing:
            return forbidden(
                request,
                "Your role does not allow this page: it needs the permission "
                + ", ".join(missing)
                + ".",
            )
        return super().dispatch(request, *args, **kwargs)


def forbidden(request: HttpRequest, message: str) -> HttpResponse:
    return render(request, "staff/403.html", {"message": message}, status=403)


def not_found(request: HttpRequest, message: str) -> HttpResponse:
    return render(request, "staff/404.html", {"message": message}, status=404)


def int_param(value: Any) -> int | None:
    """A positive id from the query string, else None (`?before=abc` is ignored)."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and 0 < len(value) < 19:
        return int(value)
    return None


class AmountError(ValueError):
    pass


def amount_parse(text: Any, *, asset: str) -> int:
    """'12.50' in USD/2 -> 1250. Refuses what is not a positive amount in the asset's scale
    (negative, zero, letters, more decimals than the asset has). Raises AmountError."""
    raw = str(text or "").strip().replace(",", "")
    scale = asset_scale(asset)
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise AmountError(f"“{raw}” is not an amount.") from None
    if not value.is_finite():
        raise AmountError(f"“{raw}” is not an amount.")
    if value <= 0:
        raise AmountError("The amount must be positive.")
    minor = value * (10**scale)
    if minor != minor.to_integral_value():
        raise AmountError(
            f"{asset} has {scale} decimal place(s): “{raw}” is not a whole number of minor units."
        )
    if minor > 99_999_999:
        raise AmountError("The amount is too large.")
    return int(minor)


def amount_text(amount: int, *, asset: str) -> str:
    scale = asset_scale(asset)
    if scale == 0:
        return str(amount)
    return f"{Decimal(amount) / (10**scale):.{scale}f}"
