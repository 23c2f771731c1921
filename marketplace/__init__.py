"""The marketplace: restaurants, riders, customers, orders, coupon campaigns, refunds,
disputes, the Stripe API seam, the webhook inbox and the money-flow templates (flows/*.num).

Imports ledger; never payouts or reconciliation."""
