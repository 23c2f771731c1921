"""Services of the marketplace (they write; `marketplace.selectors` reads), one module per
area: parties (restaurants, riders), campaigns, orders, payments, payment_intents (the
PaymentIntent of a canceled order, at Stripe), refunds, disputes, treasury (capital,
top-ups), anomalies. Locks are in `locks`, errors in `errors`.

The money flows are the Numscript templates of `marketplace/flows/`, run through
`marketplace.flows.flow_post`; never call Stripe inside a transaction (see
`stripe_gateway.client`)."""
