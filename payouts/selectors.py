"""Reading payouts and payees (no locks, no writes).

Payees are the marketplace's `Restaurant` and `Rider` rows, referenced by (kind, id); what a
payee is owed is its ledger balance (`restaurants:001`), read through the ledger's selectors.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.db.models import Count, Q, QuerySet, Sum
from django.utils import timezone

from common.leases import LeaseColumns
from ledger.models import Account
from ledger.selectors import account_balances_map, balances_get, volumes_get
from payouts import conf
from payouts.errors import PayeeNotFound, PayoutNotFound
from payouts.models import PayeeKind, Payout, PayoutEvent
from payouts.transitions import IN_FLIGHT, TERMINAL, State

_IN_FLIGHT = [str(s) for s in IN_FLIGHT]


@dataclass(frozen=True, slots=True)
class PayeeInfo:
    """What payouts need to know about a payee."""

    kind: str
    id: int
    name: str
    address: str  # restaurants:001
    destination: str  # acct_... ("" until onboarded)
    asset: str
    on_hold: bool

    @property
    def key(self) -> tuple[str, int]:
        return (self.kind, self.id)


@dataclass(frozen=True, slots=True)
class Candidate:
    payee: PayeeInfo
    balance: int  # unlocked read, a pre-filter; the amount is decided under lock


def payee_model(kind: str) -> Any:
    from marketplace.models import Restaurant, Rider

    if kind == PayeeKind.RESTAURANT:
        return Restaurant
    if kind == PayeeKind.RIDER:
        return Rider
    raise PayeeNotFound(f"unknown payee kind {kind!r} (restaurant or rider)", extra={"kind": kind})


def _info(kind: str, row: Any) -> PayeeInfo:
    return PayeeInfo(
        kind=kind,
        id=row.pk,
        name=row.name,
        address=row.ledger_address,
        destination=row.stripe_account_id,
        asset=row.asset,
        on_hold=row.payouts_on_hold,
    )


def payee_get(*, kind: str, payee_id: int) -> PayeeInfo:
    row = payee_model(kind).objects.filter(pk=payee_id).first()
    if row is None:
        raise PayeeNotFound(
            f"{kind} {payee_id} does not exist.", extra={"kind": kind, "payee_id": payee_id}
        )
    return _info(kind, row)


def payees_list(
    *, kinds: Sequence[str] | None = None, payee_ids: Iterable[tuple[str, int]] | None = None
) -> list[PayeeInfo]:
    """Payees of the given kinds (default both), or exactly `payee_ids` [(kind, id)]."""
    wanted: dict[str, set[int]] | None = None
    if payee_ids is not None:
        wanted = {}
        for kind, pk in payee_ids:
            wanted.setdefault(kind, set()).add(int(pk))
    result: list[PayeeInfo] = []
    for kind in kinds or [PayeeKind.RESTAURANT, PayeeKind.RIDER]:
        qs = payee_model(kind).objects.order_by("pk")
        if wanted is not None:
            ids = wanted.get(kind)
            if not ids:
                continue
            qs = qs.filter(pk__in=ids)
        for row in qs.only("id", "name", "stripe_account_id", "asset", "payouts_on_hold"):
            result.append(_info(kind, row))
    return result


def holds_get(keys: Iterable[tuple[str, int]]) -> set[tuple[str, int]]:
    """The (kind, id) among `keys` whose payouts are on hold now."""
    by_kind: dict[str, list[int]] = {}
    for kind, pk in keys:
        by_kind.setdefault(kind, []).append(pk)
    held: set[tuple[str, int]] = set()
    for kind, ids in by_kind.items():
        rows = payee_model(kind).objects.filter(pk__in=ids, payouts_on_hold=True)
        held.update((kind, pk) for pk in rows.values_list("pk", flat=True))
    return held


def balances_of(addresses: Iterable[str]) -> dict[str, dict[str, int]]:
    """address -> {asset: balance} (current, unlocked) for a batch of accounts, two queries."""
    ids = dict(
        Account.objects.filter(address__in=list(set(addresses))).values_list("id", "address")
    )
    return {ids[pk]: assets for pk, assets in account_balances_map(account_ids=list(ids)).items()}


def in_flight_keys(keys: Iterable[tuple[str, int]] | None = None) -> set[tuple[str, int]]:
    """(kind, id) of payees with a payout not yet terminal (among `keys`, or all)."""
    qs = Payout.objects.filter(state__in=_IN_FLIGHT)
    if keys is not None:
        condition = Q()
        by_kind: dict[str, list[int]] = {}
        for kind, pk in keys:
            by_kind.setdefault(kind, []).append(pk)
        for kind, ids in by_kind.items():
            condition |= Q(payee_kind=kind, payee_id__in=ids)
        if not by_kind:
            return set()
        qs = qs.filter(condition)
    return set(qs.values_list("payee_kind", "payee_id"))


def rolling_reserve(*, address: str, asset: str, now: datetime | None = None) -> int:
    """What the rolling reserve keeps on a payee: PAYOUTS_ROLLING_RESERVE_BPS of what it was
    credited over the last PAYOUTS_ROLLING_RESERVE_DAYS (rounded up). 0 when off."""
    bps = int(conf.get("PAYOUTS_ROLLING_RESERVE_BPS"))
    if bps <= 0:
        return 0
    now = now or timezone.now()
    days = float(conf.get("PAYOUTS_ROLLING_RESERVE_DAYS"))
    credited = volumes_get(address=address, asset=asset, start=now - timedelta(days=days)).input
    return -(-credited * bps // 10_000)


def candidates_list(
    *,
    kinds: Sequence[str] | None = None,
    payee_ids: Iterable[tuple[str, int]] | None = None,
    min_amount: int | None = None,
) -> list[Candidate]:
    """Payees the scheduler should try: onboarded, not held, nothing in flight, and a balance
    (less the rolling reserve) of at least the minimum. An unlocked pre-filter: the amount is
    decided again under the ledger's lock."""
    payees = [
        p for p in payees_list(kinds=kinds, payee_ids=payee_ids) if p.destination and not p.on_hold
    ]
    if not payees:
        return []
    by_address: dict[str, dict[str, int]] = {}
    if payee_ids is not None:
        # A given set of payees (a chunk, one payee): read just their accounts.
        busy = in_flight_keys([p.key for p in payees])
        by_address = balances_of(p.address for p in payees)
    else:
        busy = in_flight_keys()
        for kind in {p.kind for p in payees}:
            prefix = payee_model(kind).LEDGER_PREFIX
            by_address.update(balances_get(pattern=f"{prefix}:*").accounts)
    result = []
    for payee in payees:
        if payee.key in busy:
            continue
        balance = by_address.get(payee.address, {}).get(payee.asset, 0)
        floor = conf.min_amount(payee.asset) if min_amount is None else max(1, min_amount)
        if balance < floor:
            continue
        keep = rolling_reserve(address=payee.address, asset=payee.asset)
        if balance - keep >= floor:
            result.append(Candidate(payee=payee, balance=balance))
    return result


# --- payouts ----------------------------------------------------------------------------------
def payout_get(*, payout_id: str | UUID) -> Payout:
    try:
        payout = Payout.objects.filter(pk=payout_id).first()
    except Exception:  # a malformed UUID
        payout = None
    if payout is None:
        raise PayoutNotFound(
            f"payout {payout_id} does not exist.", extra={"payout_id": str(payout_id)}
        )
    return payout


def payouts_list(
    *,
    state: str | None = None,
    payee_kind: str | None = None,
    payee_id: int | None = None,
    needs_attention: bool | None = None,
) -> QuerySet[Payout]:
    qs = Payout.objects.order_by("-created_at")
    if state:
        qs = qs.filter(state=state)
    if payee_kind:
        qs = qs.filter(payee_kind=payee_kind)
    if payee_id is not None:
        qs = qs.filter(payee_id=payee_id)
    if needs_attention is not None:
        qs = qs.filter(needs_attention=needs_attention)
    return qs


def payout_events(*, payout_id: str | UUID) -> QuerySet[PayoutEvent]:
    return PayoutEvent.objects.filter(payout_id=payout_id).order_by("id")


def payout_by_transfer(*, transfer: dict[str, Any]) -> Payout | None:
    """Our payout for a Stripe transfer: by `metadata.payout_id`, else by the transfer id."""
    payout_id = (transfer.get("metadata") or {}).get("payout_id")
    if payout_id:
        try:
            found = Payout.objects.filter(pk=payout_id).first()
        except Exception:  # not one of our ids (a transfer made elsewhere)
            found = None
        if found is not None:
            return found
    transfer_id = transfer.get("id")
    if transfer_id:
        return Payout.objects.filter(transfer_id=transfer_id).first()
    return None


def payouts_due(*, now: datetime | None = None, limit: int | None = None) -> list[UUID]:
    """Payouts the sweeper must re-drive: not terminal, no live lease, and either due for a
    retry (`next_attempt_at`) or unchanged for longer than their state's threshold. A failed
    payout whose transfer exists waits for a reversal (staff), not for the sweeper."""
    # (lease_until is compared with this process's clock here, and with the database's by
    # the claim itself: a skewed sweeper only sends a message that then claims nothing.)
    now = now or timezone.now()
    free = LeaseColumns().free(now)
    stale = Q()
    # `pending` only exists inside the transaction that creates and reserves the payout.
    for state in IN_FLIGHT - {State.PENDING}:
        threshold = now - timedelta(seconds=conf.stuck_seconds(state))
        stale |= Q(state=state, state_changed_at__lt=threshold)
    due = Q(next_attempt_at__isnull=True) & stale | Q(next_attempt_at__lte=now)
    qs = (
        Payout.objects.filter(state__in=_IN_FLIGHT)
        .filter(free)
        .filter(due)
        .exclude(state=State.FAILED, transfer_id__isnull=False)
        .order_by("state_changed_at")
        .values_list("id", flat=True)
    )
    return list(qs[: limit or int(conf.get("PAYOUTS_SWEEP_LIMIT"))])


@dataclass(frozen=True)
class Status:
    by_state: dict[str, dict[str, int]]  # state -> {"count", "amount"} (per asset below)
    amounts: dict[str, dict[str, int]]  # state -> {asset: amount}
    stuck: list[Payout]
    needs_attention: int
    oldest_in_flight: datetime | None


def status_get(*, now: datetime | None = None, stuck_limit: int = 20) -> Status:
    """Counts and amounts per state, the payouts stuck past their threshold, escalations."""
    now = now or timezone.now()
    by_state: dict[str, dict[str, int]] = {str(s): {"count": 0} for s in State}
    amounts: dict[str, dict[str, int]] = {str(s): {} for s in State}
    rows = Payout.objects.values("state", "asset").annotate(n=Count("id"), total=Sum("amount"))
    for row in rows:
        by_state[row["state"]]["count"] += row["n"]
        amounts[row["state"]][row["asset"]] = int(row["total"] or 0)
    due = set(payouts_due(now=now, limit=stuck_limit))
    stuck = list(Payout.objects.filter(pk__in=due).order_by("state_changed_at"))
    oldest = (
        Payout.objects.filter(state__in=_IN_FLIGHT)
        .order_by("state_changed_at")
        .values_list("state_changed_at", flat=True)
        .first()
    )
    return Status(
        by_state=by_state,
        amounts=amounts,
        stuck=stuck,
        needs_attention=Payout.objects.filter(needs_attention=True)
        .exclude(state__in=[str(s) for s in TERMINAL])
        .count(),
        oldest_in_flight=oldest,
    )
