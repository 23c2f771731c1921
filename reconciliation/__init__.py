"""Nightly reconciliation of Stripe balance transactions against the ledger.

Imports ledger and the Stripe seam; never payouts."""
