"""Disputes (chargebacks), from `charge.dispute.*` webhooks, inside the inbox transaction.

Whatever event arrives, the dispute is fetched from Stripe beforehand and the ledger is
brought in line with ALL of its balance transactions, amount and fee, each booked once: the
withdrawal (`dispute-withdrawn:<dp_id>`: the amount from the bearer, the fee from
platform:stripe_fees, both into stripe:balance), for a won dispute the reinstatement
(`dispute-reinstated:<dp_id>`, with its fee or fee refund if Stripe has one), and any further
balance transaction Stripe attaches (a counter fee, a second adjustment:
`dispute-withdrawn:<dp_id>:<txn_id>` / `dispute-reinstated:<dp_id>:<txn_id>`). So events may
come in any order, or some not at all, and the ledger's movements on the dispute sum exactly
to Stripe's (what reconciliation matches, per `dp_`).

Who bears the amount is a policy (MARKETPLACE_DISPUTE_BEARER: "platform", the default, or
"restaurant"), fixed on the Dispute row when first seen; the fee is always the platform's.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from ledger.selectors import transactions_list
from marketplace import conf
from marketplace.flows import flow_post, monetary
from marketplace.models import Dispute, Order
from marketplace.services.anomalies import anomaly_record
from marketplace.services.common import stripe_meta
from marketplace.services.locks import dispute_lock, order_lock
from stripe_gateway.client import from_stripe_amount

logger = logging.getLogger(__name__)


class DisputeNotReady(Exception):
    """The disputed payment is not booked yet: the caller defers the event."""


def _order_for(stripe_dispute: dict[str, Any]) -> Order | None:
    charge_id = stripe_dispute.get("charge") or ""
    if isinstance(charge_id, dict):
        charge_id = charge_id.get("id", "")
    order = Order.objects.filter(charge_id=charge_id).first() if charge_id else None
    if order is None:
        pi_id = stripe_dispute.get("payment_intent") or ""
        if isinstance(pi_id, dict):
            pi_id = pi_id.get("id", "")
        order = Order.objects.filter(payment_intent_id=pi_id).first() if pi_id else None
    return order


def _primary(reference: str, txns: list[dict[str, Any]]) -> str | None:
    """The balance transaction booked (or to book) under the dispute's own `reference`."""
    booked = transactions_list(reference=reference).values_list("metadata", flat=True).first()
    if booked is not None:
        return str(booked.get("stripe_balance_transaction") or "") or None
    return txns[0]["id"] if txns else None


def dispute_sync(*, stripe_dispute: dict[str, Any], event_id: str = "") -> str:
    """Mirror a Stripe dispute (fetched) in the ledger. Returns "synced" or
    "unknown_order" (recorded as an anomaly). Raises DisputeNotReady."""
    dp_id = stripe_dispute["id"]
    order = _order_for(stripe_dispute)
    if order is None:
        anomaly_record(
            kind="unknown_order",
            stripe_object=dp_id,
            stripe_event_id=event_id,
            message=f"Dispute {dp_id} is on charge {stripe_dispute.get('charge')}, which is not "
            "one of our orders.",
        )
        return "unknown_order"
    order = order_lock(order_id=order.pk)
    if order.status not in (Order.Status.PAID, Order.Status.DELIVERED):
        raise DisputeNotReady(f"Order {order.pk}'s payment is not booked yet.")
    amount, asset = from_stripe_amount(stripe_dispute["amount"], stripe_dispute["currency"])
    dispute = dispute_lock(stripe_dispute_id=dp_id)
    if dispute is None:
        bearer = conf.get("MARKETPLACE_DISPUTE_BEARER")
        try:
            with transaction.atomic():
                Dispute.objects.create(
                    stripe_dispute_id=dp_id,
                    order=order,
                    charge_id=order.charge_id,
                    amount=amount,
                    asset=asset,
                    bearer=bearer,
                    status=str(stripe_dispute.get("status", "")),
                    reason=str(stripe_dispute.get("reason") or "")[:64],
                )
        except IntegrityError:
            pass  # a concurrent handler created it: lock it below
        dispute = dispute_lock(stripe_dispute_id=dp_id)
        assert dispute is not None
        anomaly_record(
            kind="dispute",
            stripe_object=dp_id,
            stripe_event_id=event_id,
            order=order,
            message=f"Order {order.pk} is disputed ({dispute.reason or 'no reason'}): "
            f"{amount} withdrawn plus the fee; respond by the evidence deadline.",
        )
    meta = stripe_meta(
        order_id=order.pk,
        payment_intent=order.payment_intent_id,
        charge=order.charge_id,
        dispute=dp_id,
        campaign=order.campaign.code if order.campaign else None,
        bearer=dispute.bearer,
    )
    # Every balance transaction of the dispute is booked, each once: debits (the withdrawal,
    # and any later debit such as a counter fee) with `dispute_withdrawn`, credits (the
    # reinstatement) with `dispute_reinstated`, each with its own fee. The first of each kind
    # keeps the dispute's reference (`dispute-withdrawn:<dp>`, `dispute-reinstated:<dp>`): the
    # one already booked under it (two balance transactions can share a creation second, so
    # "the earliest" is not stable as the list grows), else the earliest.
    txns = sorted(
        stripe_dispute.get("balance_transactions") or [], key=lambda t: (t["created"], t["id"])
    )
    # A credit gives money back: a reinstatement, or a fee refunded on its own (amount 0).
    credits = [
        t
        for t in txns
        if int(t["amount"]) > 0 or (int(t["amount"]) == 0 and int(t.get("fee") or 0) < 0)
    ]
    debits = [t for t in txns if t not in credits]
    primary_debit = _primary(f"dispute-withdrawn:{dp_id}", debits)
    primary_credit = _primary(f"dispute-reinstated:{dp_id}", credits)
    for txn in debits:
        fee = int(txn.get("fee") or 0)
        suffix = "" if txn["id"] == primary_debit else f":{txn['id']}"
        flow_post(
            "dispute_withdrawn",
            vars={
                "amount": monetary(dispute.asset, -int(txn["amount"])),
                "fee": monetary(dispute.asset, max(fee, 0)),
                "bearer": dispute.bearer_address,
            },
            reference=f"dispute-withdrawn:{dp_id}{suffix}",
            metadata={"stripe_object": dp_id, "stripe_balance_transaction": txn["id"], **meta},
        )
    for txn in credits:
        fee = int(txn.get("fee") or 0)
        suffix = "" if txn["id"] == primary_credit else f":{txn['id']}"
        flow_post(
            "dispute_reinstated",
            vars={
                "amount": monetary(dispute.asset, int(txn["amount"])),
                "fee": monetary(dispute.asset, max(fee, 0)),
                "fee_refund": monetary(dispute.asset, max(-fee, 0)),
                "bearer": dispute.bearer_address,
            },
            reference=f"dispute-reinstated:{dp_id}{suffix}",
            metadata={"stripe_object": dp_id, "stripe_balance_transaction": txn["id"], **meta},
        )
    # Totals over everything booked (recomputed, so a replay changes nothing).
    dispute.amount_withdrawn = sum(-int(t["amount"]) for t in debits)
    dispute.amount_reinstated = sum(int(t["amount"]) for t in credits)
    dispute.fee = max(0, sum(int(t.get("fee") or 0) for t in txns))
    fields = {"status", "updated_at", "amount_withdrawn", "amount_reinstated", "fee"}
    dispute.status = str(stripe_dispute.get("status", dispute.status))
    dispute.updated_at = timezone.now()
    dispute.save(update_fields=sorted(fields))
    return "synced"
