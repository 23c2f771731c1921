"""`make demo` (`python manage.py demo`): a day of the marketplace played against the local
Stripe emulator through the real HTTP paths, then payouts, reconciliation and the books.

Outside the product packages: it drives `stripe_emulator`, and no product code imports it
(the import contracts enforce it). Modules: `day` (the orders, payments, refunds, disputes),
`inbox` (drains the webhook inbox), `payouts` and `reconciliation` (their stages)."""
