"""What the finance pages share: parsing dates from the query string (a clear message for a
future date or one that is not a date), CSV responses, and `ConfirmedActionView`, the one
shape every money action of the finance pages has:

    GET                    the form (a reason, sometimes nothing else) and what it acts on
    POST action=preview    the preview: what it will do (postings, payouts, repairs), a
                           one-time token, a Confirm button
    POST action=confirm    claim the token (a double submit acts once), call ONE service with
                           actor = the signed-in user (the service writes the audit row)

The named permission is checked on every request by `StaffView`; a refused action releases
its token and shows the service's message (status 4xx), having written nothing."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from config.errors import ApplicationError
from staff.tokens import token_claim, token_done, token_issue, token_release
from staff.views.base import StaffView

FINANCE_READ = ("ledger.view_account", "ledger.view_transaction")


class InputError(ValueError):
    """A query-string value the page refuses; the message is shown as-is."""


def when_parse(text: Any, *, name: str, end_of_day: bool = False) -> datetime | None:
    """'2024-05-01' (start of that day UTC, or the end of it with `end_of_day`) or
    '2024-05-01T12:00' (UTC unless it says otherwise); None when empty. A date in the future
    or that is not a date raises InputError."""
    raw = str(text or "").strip()[:40]
    if not raw:
        return None
    value: datetime | None
    try:
        day = parse_date(raw)
        if day is not None:
            value = datetime.combine(day, time.min, tzinfo=UTC)
            if end_of_day:
                value += timedelta(days=1) - timedelta(microseconds=1)
        else:
            value = parse_datetime(raw.replace(" ", "T"))
    except ValueError:
        value = None
    if value is None:
        raise InputError(f"{name}: “{raw}” is not a date (use YYYY-MM-DD or YYYY-MM-DDTHH:MM).")
    if timezone.is_naive(value):
        value = value.replace(tzinfo=UTC)
    now = timezone.now()
    if value > now:
        if end_of_day and value.date() == now.astimezone(UTC).date():
            return now  # "today" means up to now
        raise InputError(f"{name}: {raw} is in the future; the books only know the past.")
    return value


def day_parse(text: Any, *, name: str) -> date | None:
    value = when_parse(text, name=name)
    return value.date() if value else None


def csv_response(filename: str, header: list[str], rows: Iterable[Iterable[Any]]) -> HttpResponse:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    response = HttpResponse(buffer.getvalue(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


class ConfirmedActionView(StaffView):
    """Subclasses set `verb` and implement `target` (the object or None -> 404), `preview`
    (a dict for the template, or raise ApplicationError/InputError: refused before the
    token), `perform` (call the service; returns the success message) and `done_url`."""

    template_name = "staff/finance_action.html"
    verb = "act"
    reason_required = True

    def target(self, request: HttpRequest, **kwargs: Any) -> Any:
        raise NotImplementedError

    def title(self, obj: Any) -> str:
        return f"{self.verb.capitalize()} {obj}"

    def preview(self, request: HttpRequest, obj: Any, reason: str) -> dict[str, Any]:
        return {}

    def perform(self, request: HttpRequest, obj: Any, reason: str) -> str:
        raise NotImplementedError

    def done_url(self, obj: Any) -> str:
        raise NotImplementedError

    def purpose(self, obj: Any) -> str:
        return f"{self.verb}:{getattr(obj, 'pk', obj)}"[:100]

    def _page(self, request: HttpRequest, obj: Any, status: int = 200, **extra: Any) -> Any:
        context = {
            "obj": obj,
            "verb": self.verb,
            "title": self.title(obj),
            "back": self.done_url(obj),
            "reason_required": self.reason_required,
            **extra,
        }
        return render(request, self.template_name, context, status=status)

    def _not_found(self, request: HttpRequest, kwargs: dict[str, Any]) -> HttpResponse:
        from staff.views.base import not_found

        return not_found(
            request,
            "There is nothing here to act on: "
            + ", ".join(f"{k} {v}" for k, v in kwargs.items())
            + " does not exist.",
        )

    def get(self, request: HttpRequest, **kwargs: Any) -> HttpResponseBase:
        obj = self.target(request, **kwargs)
        if obj is None:
            return self._not_found(request, kwargs)
        return self._page(request, obj, step="form", reason="")

    def post(self, request: HttpRequest, **kwargs: Any) -> HttpResponseBase:
        obj = self.target(request, **kwargs)
        if obj is None:
            return self._not_found(request, kwargs)
        reason = str(request.POST.get("reason", "")).strip()[:500]
        if self.reason_required and not reason:
            return self._page(
                request, obj, 400, step="form", reason="", error="A reason is required."
            )
        if request.POST.get("action") != "confirm":
            try:
                details = self.preview(request, obj, reason)
            except (ApplicationError, InputError) as exc:
                message = exc.message if isinstance(exc, ApplicationError) else str(exc)
                status = exc.http_status if isinstance(exc, ApplicationError) else 400
                return self._page(request, obj, status, step="form", reason=reason, error=message)
            token = token_issue(user=request.user, purpose=self.purpose(obj))
            return self._page(request, obj, step="confirm", reason=reason, token=token, **details)
        token = str(request.POST.get("token", ""))
        claim = token_claim(token=token, user=request.user, purpose=self.purpose(obj))
        if not claim.ok:
            messages.warning(request, claim.reason)
            return redirect(claim.result_url or self.done_url(obj))
        try:
            done = self.perform(request, obj, reason)
        except ApplicationError as exc:
            token_release(token=token)
            return self._page(
                request, obj, exc.http_status, step="form", reason=reason, error=exc.message
            )
        # `perform` may name where its result is (a re-run's new run)
        url = getattr(self, "result_url", "") or self.done_url(obj)
        token_done(token=token, result_url=url)
        messages.success(request, done)
        return redirect(url)
