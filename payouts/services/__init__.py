"""Services of the payouts app (they write; payouts.selectors reads). Import from here:

    from payouts.services import payouts_schedule, payouts_drive, payout_cancel, ...

- scheduling: `payouts_schedule` (one pass), `payout_create` (one payee, now)
- driving:    `payouts_drive` / `payout_drive` (claim + steps), `payouts_sweep`, the steps
              `step_submit`, `step_resolve`, `step_settle`, `step_return`
- staff:      `payee_hold`, `payee_release`, `payout_cancel`; retries: `payout_retry`;
              reversals: `payout_reverse` (a failed payout's transfer comes back)
- events:     what the Stripe webhook handlers apply
"""

from payouts.services.driving import (
    DriveResult,
    payout_drive,
    payouts_claim,
    payouts_drive,
    payouts_enqueue,
    payouts_release,
    payouts_sweep,
    step_resolve,
    step_return,
    step_settle,
    step_submit,
)
from payouts.services.events import (
    connected_payout_failed_apply,
    transfer_created_apply,
    transfer_reversed_apply,
)
from payouts.services.retries import payout_retry
from payouts.services.reversals import payout_reverse
from payouts.services.scheduling import ScheduleResult, payout_create, payouts_schedule
from payouts.services.staff import payee_hold, payee_release, payout_cancel

__all__ = [
    "DriveResult",
    "ScheduleResult",
    "connected_payout_failed_apply",
    "payee_hold",
    "payee_release",
    "payout_cancel",
    "payout_create",
    "payout_drive",
    "payout_retry",
    "payout_reverse",
    "payouts_claim",
    "payouts_drive",
    "payouts_enqueue",
    "payouts_release",
    "payouts_schedule",
    "payouts_sweep",
    "step_resolve",
    "step_return",
    "step_settle",
    "step_submit",
    "transfer_created_apply",
    "transfer_reversed_apply",
]
