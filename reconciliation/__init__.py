"""Reconciliation: proves every night that the ledger says what happened at Stripe.

Owns: the imported Stripe balance transactions (`StripeBalanceTransaction`, keyed by txn id),
runs and their items (`ReconciliationRun`, `ReconciliationItem`), the matching rules
(`reconciliation.matching`, pure), the set-based matching SQL (`services.matching`), the
repairs it may apply (book missing Stripe fees, replay dropped webhooks, revert clear
duplicates), totals (ledger `stripe:balance` against Stripe's balance), reports (CSV, JSON,
the `reconcile` command's tables) and the nightly Celery beat entry.

Imports: ledger (models for SQL, services to post repairs, selectors), the Stripe seam
(`stripe_gateway.client`) and the webhook inbox services (`stripe_gateway.services`)
whose replay/sync it suggests and applies. Must not import: payouts.
"""
