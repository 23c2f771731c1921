"""The double-entry ledger: accounts, transactions, postings, balances, the hash chain.

Owns the books and knows nothing of marketplaces: it imports none of the other apps (its
`numscript/` subpackage is the pure-Python interpreter it runs scripts with).

Write with `ledger.services` (transaction_post, transactions_post_bulk, transaction_revert,
account_metadata_set/delete), read with `ledger.selectors` (balance_get, balances_get,
volumes_get, transactions_list, balance_sheet_get, account_metadata_get). Errors are
`ledger.errors.LedgerError` subclasses with a stable `code`.

Convention for every app that posts: a ledger transaction that mirrors something at Stripe
carries metadata `{"stripe_object": "<ch_/re_/dp_/tr_/po_/tu_ id>", ...}` and a deterministic
reference derived from it (for example `"charge:ch_123:capture"`), so that a replayed webhook
is a replay and reconciliation finds it with `transactions_list(metadata={"stripe_object":
"ch_123"})` (a JSONB containment filter, GIN-indexed on PostgreSQL).
"""
