"""Services of the reconciliation app (they write; reconciliation.selectors reads).

from reconciliation.services import reconciliation_run, run_repairs_apply
"""

from reconciliation.services.importing import (
    ImportResult,
    balance_transactions_import,
    balance_transactions_store,
    stripe_balance_fetch,
)
from reconciliation.services.matching import MatchResult, match_run
from reconciliation.services.repairs import (
    RepairReport,
    fee_book,
    fees_book,
    repairs_apply,
    run_repairs_apply,
)
from reconciliation.services.runs import (
    changes_compute,
    reconciliation_run,
    window_for_day,
    window_validate,
)
from reconciliation.services.suggestions import suggestions_enrich
from reconciliation.services.totals import ledger_stripe_balance, totals_compute

__all__ = [
    "ImportResult",
    "MatchResult",
    "RepairReport",
    "balance_transactions_import",
    "balance_transactions_store",
    "changes_compute",
    "fee_book",
    "fees_book",
    "ledger_stripe_balance",
    "match_run",
    "reconciliation_run",
    "repairs_apply",
    "run_repairs_apply",
    "stripe_balance_fetch",
    "suggestions_enrich",
    "totals_compute",
    "window_for_day",
    "window_validate",
]
