"""Celery tasks of the ledger: thin wrappers over services."""

import logging

from celery import shared_task

from ledger.services.checkpoints import checkpoints_run
from ledger.services.sealing import chain_verify, transactions_seal

logger = logging.getLogger(__name__)


@shared_task(name="ledger.seal", ignore_result=True)
def ledger_seal() -> int:
    """Seal every committed transaction not sealed yet (a no-op if another sealer runs)."""
    return transactions_seal()


@shared_task(name="ledger.verify", ignore_result=True)
def ledger_verify() -> bool:
    """Nightly: recompute the hash chain and the balance invariants; log an error if broken."""
    report = chain_verify()
    if not report.ok:
        logger.error("ledger: verification failed: %s", report)
    return report.ok


@shared_task(name="ledger.checkpoint", ignore_result=True)
def ledger_checkpoint() -> int | None:
    """Every LEDGER_CHECKPOINT_INTERVAL: balances of every account now (ledger/services/
    checkpoints.py); derived data, so a lost run only makes past balances read longer ranges."""
    result = checkpoints_run()
    logger.info(
        "ledger: checkpoint run %s at %s: %d rows, %d postings folded, %d runs pruned",
        result.run_id,
        result.at.isoformat(),
        result.rows,
        result.folded,
        result.pruned,
    )
    return result.run_id
