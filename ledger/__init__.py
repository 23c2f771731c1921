"""The double-entry ledger: accounts, transactions, postings, balances, Numscript.

Owns the books and knows nothing of marketplaces: it imports none of the other apps."""
