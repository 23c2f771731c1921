"""Payouts to restaurants and riders: the state machine, Celery tasks, Stripe transfers.

Imports ledger and marketplace; never reconciliation."""
