"""The payouts board: counts by state, the oldest non-terminal payout's age, a filtered list
(payee / state / date, keyset by creation time); a payout's page with its transitions and its
Stripe transfer; and the staff actions of `payouts.services` (hold / release a payee; cancel,
retry, reverse a payout), each previewed, confirmed once, permission-checked
(`payouts.manage_payouts`) and audited by the service, with the API's actor label."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone

from marketplace.models import Restaurant, Rider
from payouts import selectors as payout_selectors
from payouts.models import PayeeHoldChange, Payout
from payouts.services import payee_hold, payee_release, payout_cancel, payout_retry, payout_reverse
from payouts.transitions import TERMINAL, State
from staff.views.base import StaffView, not_found
from staff.views.finance_base import ConfirmedActionView, InputError, when_parse

VIEW = ("payouts.view_payout",)
MANAGE = ("payouts.view_payout", "payouts.manage_payouts")
PAGE = 50
PAYEE_MODELS: dict[str, Any] = {"restaurant": Restaurant, "rider": Rider}


def _actor(request: HttpRequest) -> str:
    return f"staff:{request.user.get_username()}"


def _payee_filter(text: str) -> tuple[str, int] | None:
    """'restaurant:12', 'rider 3', 'restaurants:012' -> (kind, id). Raises InputError."""
    raw = text.strip().replace(" ", ":")
    kind, _, ident = raw.partition(":")
    kind = kind.rstrip("s")
    if kind not in PAYEE_MODELS or not ident.isdigit() or len(ident) > 18:
        raise InputError(f"Payee “{text[:40]}”: write restaurant:<id> or rider:<id>.")
    return kind, int(ident)


def _payout(payout_id: str) -> Payout | None:
    try:
        return payout_selectors.payout_get(payout_id=payout_id)
    except Exception:  # PayoutNotFound, or not a UUID at all
        return None


class PayoutsBoardView(StaffView):
    permissions = VIEW

    def get(self, request: HttpRequest) -> HttpResponse:
        status = payout_selectors.status_get(stuck_limit=10)
        q = {
            k: str(request.GET.get(k, "")).strip()[:60]
            for k in ("payee", "state", "since", "until")
        }
        context: dict[str, Any] = {"status": status, "q": q, "states": State.choices}
        http_status = 200
        rows: list[Payout] = []
        try:
            payee = _payee_filter(q["payee"]) if q["payee"] else None
            if q["state"] and q["state"] not in State.values:
                raise InputError(f"State “{q['state']}” does not exist.")
            since = when_parse(q["since"], name="Since")
            until = when_parse(q["until"], name="Until", end_of_day=True)
            before = when_parse(request.GET.get("before"), name="Page")
            qs = payout_selectors.payouts_list(
                state=q["state"] or None,
                payee_kind=payee[0] if payee else None,
                payee_id=payee[1] if payee else None,
            ).order_by("-created_at", "-id")
            if since:
                qs = qs.filter(created_at__gte=since)
            if until:
                qs = qs.filter(created_at__lte=until)
            if before:
                qs = qs.filter(created_at__lt=before)
            rows = list(qs[: PAGE + 1])
        except InputError as exc:
            context["error"], http_status = str(exc), 400
        context["rows"] = rows[:PAGE]
        context["next_before"] = rows[PAGE - 1].created_at.isoformat() if len(rows) > PAGE else None
        oldest = status.oldest_in_flight
        context["oldest_age"] = (timezone.now() - oldest) if oldest else None
        context["terminal"] = sorted(str(s) for s in TERMINAL)
        return render(request, "staff/payouts.html", context, status=http_status)


class PayoutView(StaffView):
    permissions = VIEW

    def get(self, request: HttpRequest, payout_id: str) -> HttpResponse:
        payout = _payout(payout_id)
        if payout is None:
            return not_found(request, f"There is no payout {payout_id[:60]}.")
        payee = PAYEE_MODELS[payout.payee_kind].objects.filter(pk=payout.payee_id).first()
        return render(
            request,
            "staff/payout.html",
            {
                "payout": payout,
                "payee": payee,
                "events": payout_selectors.payout_events(payout_id=payout.pk),
                "holds": PayeeHoldChange.objects.filter(
                    payee_kind=payout.payee_kind, payee_id=payout.payee_id
                ).order_by("-id")[:10],
                "can_manage": request.user.has_perm("payouts.manage_payouts"),
            },
        )


class PayoutActionView(ConfirmedActionView):
    """cancel (reserved) / retry (failed) / reverse (failed, transfer at Stripe)."""

    permissions = MANAGE
    reason_required = True

    def target(self, request: HttpRequest, **kwargs: Any) -> Payout | None:
        return _payout(kwargs["payout_id"])

    def title(self, obj: Any) -> str:
        return f"{self.verb.capitalize()} payout {obj.account}"

    def done_url(self, obj: Any) -> str:
        return reverse("staff:payout", args=[str(obj.pk)])

    def preview(self, request: HttpRequest, obj: Any, reason: str) -> dict[str, Any]:
        amount = obj.amount - obj.amount_reversed
        if self.verb == "cancel":
            if obj.state != State.RESERVED:
                raise InputError(
                    f"This payout is {obj.state}: only a reserved payout can be cancelled."
                )
            return {
                "summary": f"Cancel payout {obj.account}: it becomes returned and its money "
                "goes back to the payee.",
                "postings": [
                    {
                        "source": obj.account,
                        "destination": obj.payee_address,
                        "asset": obj.asset,
                        "amount": obj.amount,
                    }
                ],
            }
        if self.verb == "retry":
            if obj.state not in (State.FAILED, State.RETURNED):
                raise InputError(f"This payout is {obj.state}: only a failed payout is retried.")
            if obj.state == State.FAILED and obj.transfer_id and amount > 0:
                raise InputError(
                    f"Transfer {obj.transfer_id} still holds money at the connected account: "
                    "reverse it first, or the payee is paid twice."
                )
            lines = ["Then a new payout is created for what the payee is owed at that moment."]
            postings = []
            if obj.state == State.FAILED:
                postings.append(
                    {
                        "source": obj.account,
                        "destination": obj.payee_address,
                        "asset": obj.asset,
                        "amount": obj.amount,
                    }
                )
            return {
                "summary": f"Retry payout {obj.account}: its money back to the payee first.",
                "postings": postings,
                "lines": lines,
            }
        if obj.state != State.FAILED or not obj.transfer_id:
            raise InputError(
                "Only a failed payout whose transfer exists at Stripe can be reversed."
            )
        return {
            "summary": f"Reverse transfer {obj.transfer_id} at Stripe (the rest of it) and give "
            "the money back to the payee.",
            "postings": [
                {
                    "source": "stripe:balance",
                    "destination": obj.payee_address,
                    "asset": obj.asset,
                    "amount": amount,
                }
            ],
        }

    def perform(self, request: HttpRequest, obj: Any, reason: str) -> str:
        actor = _actor(request)
        if self.verb == "cancel":
            payout_cancel(payout_id=obj.pk, reason=reason, actor=actor)
            return f"Payout {obj.account} cancelled: the money is back on {obj.payee_address}."
        if self.verb == "retry":
            new = payout_retry(payout_id=obj.pk, actor=actor)
            new.refresh_from_db()  # its driver may already have moved it (eager, or fast)
            return f"Payout {obj.account} retried as {new.account} ({new.state})."
        done = payout_reverse(payout_id=obj.pk, reason=reason, actor=actor)
        return f"Transfer {obj.transfer_id} reversed; the payout is {done.state}."


class PayeeHoldView(ConfirmedActionView):
    permissions = MANAGE

    def target(self, request: HttpRequest, **kwargs: Any) -> Any:
        model = PAYEE_MODELS.get(kwargs["kind"])
        if model is None or kwargs["payee_id"] >= 2**63:
            return None
        return model.objects.filter(pk=kwargs["payee_id"]).first()

    def title(self, obj: Any) -> str:
        return f"{self.verb.capitalize()} payouts of {obj.ledger_address} ({obj.name})"

    def purpose(self, obj: Any) -> str:
        return f"payee.{self.verb}:{obj.ledger_address}"

    def done_url(self, obj: Any) -> str:
        kind = "rider" if isinstance(obj, Rider) else "restaurant"
        return reverse("staff:payouts") + f"?payee={kind}:{obj.pk}"

    def preview(self, request: HttpRequest, obj: Any, reason: str) -> dict[str, Any]:
        kind = "rider" if isinstance(obj, Rider) else "restaurant"
        if self.verb == "hold":
            if obj.payouts_on_hold:
                raise InputError(f"{obj.ledger_address} is already on hold.")
            reserved = list(
                Payout.objects.filter(payee_kind=kind, payee_id=obj.pk, state=State.RESERVED)
            )
            return {
                "summary": f"Hold {obj.ledger_address}: the scheduler skips it until released; "
                "a payout already sent to Stripe runs its course.",
                "postings": [
                    {
                        "source": p.account,
                        "destination": p.payee_address,
                        "asset": p.asset,
                        "amount": p.amount,
                    }
                    for p in reserved
                ],
                "lines": [f"{len(reserved)} reserved payout(s) cancelled (money back)."],
            }
        if not obj.payouts_on_hold:
            raise InputError(f"{obj.ledger_address} is not on hold.")
        return {
            "summary": f"Release {obj.ledger_address}: the next scheduling pass pays it again.",
            "lines": ["Nothing moves in the ledger now."],
        }

    def perform(self, request: HttpRequest, obj: Any, reason: str) -> str:
        kind = "rider" if isinstance(obj, Rider) else "restaurant"
        if self.verb == "hold":
            cancelled = payee_hold(kind=kind, payee_id=obj.pk, reason=reason, actor=_actor(request))
            return f"{obj.ledger_address} held ({len(cancelled)} reserved payout(s) cancelled)."
        payee_release(kind=kind, payee_id=obj.pk, reason=reason, actor=_actor(request))
        return f"{obj.ledger_address} released."
