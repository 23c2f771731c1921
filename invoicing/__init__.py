"""Invoicing: the documents that justify money the ledger already moved.

Owns the invoicing models A/B/C per restaurant (a versioned profile) and per order (decided by
`policy.model_decide` as of the payment, frozen once a document exists), tax per line,
gapless numbering per issuer series and year, immutable documents (PostgreSQL triggers),
credit notes per bearer share, the ledger tie-out check, HTML/PDF rendering and the API.

Documents are computed from the order's LEDGER transactions (`ledger_facts`), never from
request data. Depends on `ledger` and `marketplace` (read-only); nothing imports it but the
settings, the root urls and the demo.
"""
