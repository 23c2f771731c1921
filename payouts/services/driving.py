"""Driving payouts to a terminal state: claim, then the steps, each idempotent and re-runnable.

A driver (a Celery task, the sweeper's task, a command) calls `payouts_drive(ids=...)`:

1. **claim** (`common.leases`): one short transaction locks the ids that are not terminal
   and whose lease is free or expired, and sets `lease_token`/`lease_until` (database time)
   on them. Only claimed payouts are driven;
   a second worker on the same ids (a redelivered message, the sweeper and a task at once)
   claims nothing. Every later write is fenced: it locks the rows `WHERE lease_token =
   <ours>`, so a worker whose lease was taken over writes nothing.
2. **submit** (reserved): payees held or with a negative balance are cancelled (reserved ->
   returned, the money covers what they owe); the others go to `submitting` with their key
   `transfer:<id>`, COMMIT; then one Stripe call each (no transaction open); then one
   transaction records the outcomes (submitted with the `tr_` id / failed / still unknown).
3. **resolve** (submitting, found at the start: a crash or a retry): LOOK UP the transfer
   first; create with the same stored key only if Stripe has none.
4. **settle** (submitted): the settle flow and `paid`, one transaction.
5. **return** (failed without a transfer): the return flow and `returned`, one transaction.
6. **release**: the lease is cleared; an unresolved payout gets `next_attempt_at` (backoff).

A crash anywhere leaves a state plus an expiring lease; the sweeper re-drives it after the
lease expires and the state's threshold passes, and the steps above continue from there.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from uuid import UUID

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from common.backoff import backoff_delay
from common.leases import Lease, Sweeper, lease_claim
from config.celery import task_send
from ledger.retry import retry_on_conflict
from payouts import conf, lock_objects, selectors
from payouts.models import Payout
from payouts.services import returns, states
from payouts.services.bulk import rows_update
from payouts.services.staff import payee_hold
from payouts.services.transfers import Outcome, transfer_create, transfer_lookup
from payouts.transitions import TERMINAL, State, idempotency_key
from stripe_gateway.errors import PaymentProviderError

logger = logging.getLogger(__name__)

_TERMINAL = [str(s) for s in TERMINAL]


@dataclass
class DriveResult:
    requested: int = 0
    claimed: int = 0
    paid: list[str] = field(default_factory=list)
    returned: list[str] = field(default_factory=list)
    unresolved: list[str] = field(default_factory=list)  # still submitting: retry later
    waiting: list[str] = field(default_factory=list)  # other non-terminal (e.g. failed w/ transfer)

    def as_dict(self) -> dict[str, Any]:
        return {
            "requested": self.requested,
            "claimed": self.claimed,
            "paid": len(self.paid),
            "returned": len(self.returned),
            "unresolved": len(self.unresolved),
            "waiting": len(self.waiting),
        }


def payouts_claim(*, ids: Iterable[UUID | str], seconds: float | None = None) -> Lease[Payout]:
    """Claim the non-terminal payouts among `ids` whose lease is free or expired (database
    time); the lease's rows carry their state as claimed."""
    return lease_claim(
        Payout.objects.filter(pk__in=list(ids)).exclude(state__in=_TERMINAL),
        seconds=float(seconds if seconds is not None else conf.get("PAYOUTS_LEASE_SECONDS")),
        only=("state",),
    )


def payouts_release(lease: Lease[Payout], *, unresolved: Sequence[Any] = ()) -> None:
    """Clear our lease; unresolved payouts get a retry time that backs off with attempts."""
    if unresolved:
        now = timezone.now()
        rows = list(lease.held(unresolved))
        for row in rows:
            row.next_attempt_at = now + timedelta(seconds=retry_delay(row.attempts))
        rows_update(Payout, rows, ["next_attempt_at"])
    # Terminal payouts keep their (expired, meaningless) lease: nothing claims a terminal
    # payout, and skipping the write saves one row version per payout.
    lease.release(exclude=Q(state__in=_TERMINAL))


def retry_delay(attempts: int) -> float:
    """Seconds before the sweeper retries an unresolved payout: 15 s doubling, capped at 1 h."""
    return backoff_delay(attempts, base=15, cap=3600)


# --- the steps -------------------------------------------------------------------------------
def _blocked(payouts: Sequence[Payout]) -> dict[Any, str]:
    """Reserved payouts that must not be sent: the payee is on hold, or owes money (its
    balance went negative after the reserve: a refund or a dispute). Cancelling them gives the
    reserved money back, which covers the debt; the next pass pays what is left."""
    keys = {(p.payee_kind, p.payee_id) for p in payouts}
    held = selectors.holds_get(keys)
    balances = selectors.balances_of(p.payee_address for p in payouts)
    blocked = {}
    for p in payouts:
        if (p.payee_kind, p.payee_id) in held:
            blocked[p.pk] = "cancelled: the payee is on hold"
        elif balances.get(p.payee_address, {}).get(p.asset, 0) < 0:
            owed = balances[p.payee_address][p.asset]
            blocked[p.pk] = (
                f"cancelled: the payee's balance is negative ({owed}), the reserve covers it"
            )
    return blocked


@retry_on_conflict
def payouts_cancel_reserved(
    *, ids: Sequence[Any], why: str | dict[Any, str], actor: str, lease_token: str | None = None
) -> list[Payout]:
    """reserved -> returned for those of `ids` still reserved (payee rows locked first)."""
    rows = list(Payout.objects.filter(pk__in=list(ids), state=State.RESERVED))
    if not rows:
        return []
    with transaction.atomic(durable=True):
        lock_objects.payees_lock(payees=[(p.payee_kind, p.payee_id, p.payee_address) for p in rows])
        locked = lock_objects.payouts_lock(
            ids=[p.pk for p in rows], lease_token=lease_token, states=[State.RESERVED]
        )
        return returns.give_back(locked, why=why, actor=actor)


@retry_on_conflict
def _mark_submitting(ids: Sequence[Any], lease: Lease, actor: str) -> list[Payout]:
    with transaction.atomic(durable=True):
        locked = lock_objects.payouts_lock(
            ids=ids, lease_token=lease.token, states=[State.RESERVED]
        )
        return states.transitions_many(
            locked,
            State.SUBMITTING,
            why="transfer requested: key stored before calling Stripe",
            actor=actor,
            fields={
                p.pk: {"idempotency_key": idempotency_key(str(p.pk)), "attempts": p.attempts + 1}
                for p in locked
            },
        )


@retry_on_conflict
def _record(outcomes: Sequence[Outcome], lease: Lease, actor: str) -> list[Payout]:
    """One transaction: submitting -> submitted / failed, or the unknown attempt noted."""
    if not outcomes:
        return []
    by_id = {o.payout_id: o for o in outcomes}
    escalate_after = float(conf.get("PAYOUTS_ESCALATE_SECONDS"))
    now = timezone.now()
    with transaction.atomic(durable=True):
        locked = lock_objects.payouts_lock(
            ids=list(by_id), lease_token=lease.token, states=[State.SUBMITTING]
        )
        created = [p for p in locked if by_id[p.pk].kind == "created"]
        refused = [p for p in locked if by_id[p.pk].kind == "refused"]
        unknown = [p for p in locked if by_id[p.pk].kind == "unknown"]
        states.transitions_many(
            created,
            State.SUBMITTED,
            why={p.pk: f"Stripe transfer {by_id[p.pk].transfer['id']} created" for p in created},  # type: ignore[index]
            actor=actor,
            fields={
                p.pk: {"transfer_id": by_id[p.pk].transfer["id"], "last_error": ""}  # type: ignore[index]
                for p in created
            },
        )
        states.transitions_many(
            refused,
            State.FAILED,
            why={p.pk: f"Stripe refused the transfer: {by_id[p.pk].error}" for p in refused},
            actor=actor,
            fields={p.pk: {"last_error": by_id[p.pk].error[:2000]} for p in refused},
            data={p.pk: by_id[p.pk].extra for p in refused},
        )
        for p in unknown:
            outcome = by_id[p.pk]
            p.last_error = outcome.error[:2000]
            age = (now - p.submitting_at).total_seconds() if p.submitting_at else 0.0
            if outcome.attention or (age > escalate_after and not p.needs_attention):
                if not p.needs_attention:
                    logger.error(
                        "payout %s unresolved in submitting for %.0f s: %s", p.pk, age, p.last_error
                    )
                p.needs_attention = True
        if unknown:
            rows_update(Payout, unknown, ["last_error", "needs_attention"])
    return locked


def step_submit(ids: Sequence[Any], lease: Lease, actor: str) -> list[Outcome]:
    """reserved -> submitting -> (Stripe) -> submitted / failed / unknown."""
    reserved = list(
        Payout.objects.filter(pk__in=ids, lease_token=lease.token, state=State.RESERVED)
    )
    if not reserved:
        return []
    blocked = _blocked(reserved)
    if blocked:
        payouts_cancel_reserved(
            ids=list(blocked), why=blocked, actor=actor, lease_token=lease.token
        )
    submitting = _mark_submitting([p.pk for p in reserved if p.pk not in blocked], lease, actor)
    # No transaction open from here: the Stripe calls.
    outcomes = stripe_calls(transfer_create, submitting, lease)
    _record(outcomes, lease, actor)
    _auto_holds(outcomes, submitting, actor)
    return outcomes


def stripe_calls(fn: Any, payouts: Sequence[Payout], lease: Lease) -> list[Outcome]:
    """`fn(payout)` for each payout, PAYOUTS_STRIPE_CONCURRENCY at a time (Stripe answers a
    transfer create in a few hundred ms: one at a time, a batch of 100 would hold its lease
    for half a minute). `fn` only talks to Stripe: the database stays in this thread, which
    renews the lease while it waits."""
    concurrency = min(len(payouts), max(1, int(conf.get("PAYOUTS_STRIPE_CONCURRENCY"))))
    if concurrency <= 1:
        outcomes = []
        for payout in payouts:
            lease.heartbeat()
            outcomes.append(fn(payout))
        return outcomes
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="payouts-stripe") as pool:
        futures = [pool.submit(fn, payout) for payout in payouts]
        pending = set(futures)
        while pending:
            _done, pending = wait(pending, timeout=lease.seconds / 6)
            lease.heartbeat()
        return [future.result() for future in futures]


def _lookup(payout: Payout) -> Outcome:
    try:
        found = transfer_lookup(payout)
    except PaymentProviderError as exc:
        return Outcome(payout.pk, "unknown", error=f"lookup failed: {exc}")
    return found if found is not None else Outcome(payout.pk, "absent")


def step_resolve(ids: Sequence[Any], lease: Lease, actor: str) -> list[Outcome]:
    """submitting (left by a crash or an unknown outcome): LOOK UP the transfer first; only if
    Stripe has none, create it again with the SAME stored key and parameters."""
    rows = list(Payout.objects.filter(pk__in=ids, lease_token=lease.token, state=State.SUBMITTING))
    if not rows:
        return []
    # Look up first (concurrently); only what Stripe does not have is created again.
    looked = stripe_calls(_lookup, rows, lease)
    outcomes = [o for o in looked if o.kind != "absent"]
    absent = {o.payout_id for o in looked if o.kind == "absent"}
    again = [p for p in rows if p.pk in absent]
    if again:
        # Counted before the calls, so a crash during them still shows in `attempts`.
        Payout.objects.filter(pk__in=list(absent), lease_token=lease.token).update(
            attempts=F("attempts") + 1
        )
        for payout in again:
            payout.attempts += 1
        outcomes += stripe_calls(transfer_create, again, lease)
    _record(outcomes, lease, actor)
    _auto_holds(outcomes, rows, actor)
    return outcomes


@retry_on_conflict
def step_settle(ids: Sequence[Any], lease: Lease | None, actor: str) -> list[Payout]:
    """submitted -> paid (settle flow), one transaction."""
    with transaction.atomic(durable=True):
        locked = lock_objects.payouts_lock(
            ids=ids, lease_token=lease.token if lease else None, states=[State.SUBMITTED]
        )
        return returns.settle(locked, actor=actor)


@retry_on_conflict
def step_return(ids: Sequence[Any], lease: Lease | None, actor: str) -> list[Payout]:
    """failed with no transfer -> returned (return flow), one transaction."""
    qs = Payout.objects.filter(pk__in=ids, state=State.FAILED, transfer_id__isnull=True)
    if lease is not None:
        qs = qs.filter(lease_token=lease.token)
    rows = list(qs)
    if not rows:
        return []
    with transaction.atomic(durable=True):
        lock_objects.payees_lock(payees=[(p.payee_kind, p.payee_id, p.payee_address) for p in rows])
        locked = [
            p
            for p in lock_objects.payouts_lock(
                ids=[p.pk for p in rows],
                lease_token=lease.token if lease else None,
                states=[State.FAILED],
            )
            if not p.transfer_id
        ]
        return returns.give_back(
            locked,
            why={
                p.pk: f"returned to {p.payee_address}: {p.last_error or 'transfer failed'}"
                for p in locked
            },
            actor=actor,
        )


def _auto_holds(outcomes: Sequence[Outcome], payouts: Sequence[Payout], actor: str) -> None:
    """A refusal that will recur for this payee (bad or disabled account...) holds the payee,
    so the scheduler stops creating payouts that fail; staff release it once fixed."""
    by_id = {p.pk: p for p in payouts}
    for outcome in outcomes:
        if outcome.kind == "refused" and outcome.hold_payee and outcome.payout_id in by_id:
            p = by_id[outcome.payout_id]
            payee_hold(
                kind=p.payee_kind,
                payee_id=p.payee_id,
                reason=f"transfer of payout {p.pk} refused by Stripe: {outcome.error}"[:2000],
                actor=actor,
            )


# --- the driver ------------------------------------------------------------------------------
def payouts_drive(*, ids: Iterable[UUID | str], actor: str = "driver") -> DriveResult:
    """Move the given payouts as far as they can go now (see the module doc). Safe to call
    concurrently and repeatedly with overlapping ids: only what this call claims is driven."""
    wanted = list(ids)
    result = DriveResult(requested=len(wanted))
    lease = payouts_claim(ids=wanted)
    result.claimed = len(lease.ids)
    if not lease.ids:
        return result
    unresolved: list[Any] = []
    try:
        ids_ = lease.ids
        initial = {p.state for p in lease.rows}
        outcomes: list[Outcome] = []
        # First resolve what an earlier run left in submitting, then send what is new; a
        # step runs only when some payout may need it (each is idempotent either way).
        if State.SUBMITTING in initial:
            outcomes += step_resolve(ids_, lease, actor)
        if State.RESERVED in initial:
            outcomes += step_submit(ids_, lease, actor)
        kinds = {o.kind for o in outcomes}
        if State.SUBMITTED in initial or "created" in kinds:
            step_settle(ids_, lease, actor)
        if State.FAILED in initial or "refused" in kinds:
            step_return(ids_, lease, actor)
        final = dict(Payout.objects.filter(pk__in=ids_).values_list("id", "state"))
    except Exception:
        # An ordinary error releases the lease at once (the sweeper retries later). A crash
        # (SIGKILL, or a BaseException in the tests' simulations) keeps it until it expires.
        payouts_release(lease)
        raise
    for pk, state in final.items():
        if state == State.PAID:
            result.paid.append(str(pk))
        elif state == State.RETURNED:
            result.returned.append(str(pk))
        elif state == State.SUBMITTING:
            result.unresolved.append(str(pk))
            unresolved.append(pk)
        else:
            result.waiting.append(str(pk))
    payouts_release(lease, unresolved=unresolved)
    return result


def payout_drive(*, payout_id: UUID | str, actor: str = "driver") -> Payout:
    """Drive one payout; returns it as it is afterwards."""
    payouts_drive(ids=[payout_id], actor=actor)
    return selectors.payout_get(payout_id=payout_id)


def payouts_enqueue(ids: Sequence[UUID | str]) -> int:
    """Send driving tasks for `ids` in batches. Never raises: if the broker is down the rows
    are still the truth and the sweeper re-drives them."""
    size = max(1, int(conf.get("PAYOUTS_DRIVE_BATCH")))
    sent = 0
    for start in range(0, len(ids), size):
        batch = [str(i) for i in ids[start : start + size]]
        try:
            task_send(
                "payouts.tasks.payouts_drive",
                batch,
                queue=conf.get("PAYOUTS_QUEUE"),
                retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0.2},
            )
            sent += len(batch)
        except Exception:
            logger.exception("payouts: could not send a driving task (the sweeper will)")
    return sent


SWEEPER = Sweeper(
    name="payouts",
    due=lambda now, limit: selectors.payouts_due(now=now, limit=limit),
    requeue=payouts_enqueue,
    batch=lambda: int(conf.get("PAYOUTS_SWEEP_LIMIT")),
)


def payouts_sweep(*, limit: int | None = None) -> int:
    """Re-drive what is stuck: no live lease and past its state's threshold (or its retry
    time). Returns how many payouts were handed to driving tasks."""
    return SWEEPER(limit=limit)
