"""Payouts to restaurants and riders: the state machine, Celery tasks, Stripe transfers.

Owns: `Payout` (+ its audit rows), the transition table (`transitions.py`), the money flows
reserve / settle / return (`flows/*.num`), the driver that creates each payout's one Stripe
transfer crash-safely (`services/driving.py`), the webhook handlers for `transfer.*` and the
connected accounts' `payout.*`, the staff operations, `manage.py payouts`.

Imports ledger and marketplace (the payees, the Stripe seam, the webhook registry); never
reconciliation.
"""
