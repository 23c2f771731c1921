"""The Stripe integration: the API seam, its errors, and the webhook inbox.

Modules: `client` (the only module importing `stripe`: `StripeGateway`, amount conversion),
`errors` (what the seam raises), `views` (the webhook endpoint), `signature`
(Stripe-Signature verification), `registry` (the `{event type: handler}` table apps register
into), `models` (`StripeEvent`, the inbox), `services` (ingest, process, sweep, replay, sync),
`tasks` (Celery), `testing` (test helpers), `manage.py stripe_events` (replay, sync).

Life of an event
----------------
1. `POST /webhooks/stripe/` verifies the signature over the raw body (any configured secret,
   300 s tolerance both ways), parses it, and inserts it with `ON CONFLICT DO NOTHING`: the
   Stripe id is unique, so a redelivery (even 20 at once) is a 200 that does nothing else.
   Only the winning insert schedules its processing (on commit), through
   `config.celery.task_publish`: Celery's own message, put on the Redis channel directly.
   With drains (STRIPE_EVENTS_DRAINS > 0, a Redis broker, not eager) that message is a
   `stripe_events_drain` of one slot, published only if the slot's Redis gate was open: a
   drain processes every new row it can claim (`services.events_drain`), so a burst of
   events costs a few tasks; otherwise it is the row's own `stripe_event_process`.
2. `event_process(event_id=...)` claims the row (`SELECT ... FOR UPDATE SKIP LOCKED`, status
   -> `processing`, `attempts += 1`, `next_attempt_at` = lease expiry; `attempts` is the
   lease token). Unknown types and events whose `livemode` does not match our API key are
   marked `ignored`.
3. The handler runs in two phases, which is how "no Stripe call inside a transaction" and
   "the ledger write and the processed mark commit together" both hold:
   - `prepare(event)` (optional) runs with no transaction open: fetch from Stripe here. If
     it returns a `HandlerResult` (the outcome is settled: nothing to write, e.g. the payment
     is booked already), the row is marked with it by the one lease-guarded UPDATE and
     `apply` is not called;
   - `apply(event[, prepared])` runs inside `transaction.atomic(durable=True)` after the
     row is locked again and the lease token checked; the row is marked `processed` (or
     `ignored` if the handler returns `HandlerResult.ignored(...)`) in the same transaction.
     A handler must not open its own durable transaction nor call Stripe here.
4. `DeferEvent` -> `deferred`, any other exception -> `failed` (rolled back); both get
   `next_attempt_at` = now + backoff (`STRIPE_EVENTS_BACKOFF_BASE * 2**(attempt-1)`, capped
   at `STRIPE_EVENTS_BACKOFF_MAX`) and `last_error`; a failing row is `failed` with no next
   attempt after `STRIPE_EVENTS_MAX_ATTEMPTS` (replay it by hand); a deferred one only once
   older than `STRIPE_EVENTS_DEFER_HORIZON` (3 days: Stripe can deliver what it waits for
   as long as it retries webhooks).
5. The sweeper (`stripe_events_sweep`, every 30 s) re-drives every row whose
   `next_attempt_at` has passed, one `stripe_event_process` task each: lost scheduling
   (`received` after the grace period), due retries, expired leases of crashed workers.

Must not import: marketplace, payouts, reconciliation or any other domain app (the import
contracts in pyproject.toml enforce it). Handlers live in the apps that own the money flows
and register into `registry.HANDLERS` from their `AppConfig.ready()`.
"""
