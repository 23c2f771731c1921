"""Celery tasks of the payouts app: thin, they call one service.

All are `acks_late` (a message is only acknowledged once the task returns), and correctness
never depends on the message: the payout rows (state + lease + next_attempt_at) are the truth
and `payouts_sweep` (beat) re-drives whatever a lost message or a killed task left behind
once its lease expired.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task

from common.backoff import backoff_delay
from payouts import conf, services


@shared_task(
    bind=True,
    name="payouts.tasks.payouts_drive",
    acks_late=True,
    max_retries=None,  # bounded below by PAYOUTS_TASK_MAX_RETRIES (read at run time)
)
def payouts_drive(self: Any, payout_ids: list[str]) -> dict[str, Any]:
    """Drive these payouts as far as they go; retry the unresolved ones with backoff (then
    the sweeper takes over)."""
    result = services.payouts_drive(ids=payout_ids, actor=f"task:{self.request.id or 'eager'}")
    retries = self.request.retries or 0
    if (
        result.unresolved
        and not self.request.is_eager
        and retries < int(conf.get("PAYOUTS_TASK_MAX_RETRIES"))
    ):
        raise self.retry(
            args=[result.unresolved],
            countdown=backoff_delay(retries + 1, base=5, cap=300),
            queue=conf.get("PAYOUTS_QUEUE"),
        )
    return result.as_dict()


@shared_task(bind=True, name="payouts.tasks.payouts_schedule", acks_late=True)
def payouts_schedule(
    self: Any, payee_ids: list[list[Any]] | None = None, min_amount: int | None = None
) -> dict[str, Any]:
    """The beat's scheduling pass (every payee), or a pass over `payee_ids` [[kind, id]]:
    picks the candidates and fans the chunks out to the workers (inline when eager).
    Re-running it is safe: a payee with a payout in flight is skipped."""
    return services.payouts_schedule(
        payee_ids=_keys(payee_ids),
        min_amount=min_amount,
        actor="beat:payouts-schedule",
        fan_out=not self.request.is_eager,
    ).as_dict()


@shared_task(bind=True, name="payouts.tasks.payouts_schedule_chunk", acks_late=True)
def payouts_schedule_chunk(
    self: Any, payee_ids: list[list[Any]], min_amount: int | None = None
) -> dict[str, Any]:
    """Create (and reserve) the payouts of one chunk of payees, then send them to driving."""
    return services.payouts_schedule(
        payee_ids=_keys(payee_ids),
        min_amount=min_amount,
        actor=f"task:{self.request.id or 'eager'}",
    ).as_dict()


def _keys(payee_ids: list[list[Any]] | None) -> list[tuple[str, int]] | None:
    return [(str(k), int(i)) for k, i in payee_ids] if payee_ids is not None else None


@shared_task(name="payouts.tasks.payouts_sweep", acks_late=True)
def payouts_sweep() -> int:
    """The beat's sweeper: re-drive payouts stuck past their state's threshold."""
    return services.payouts_sweep()
