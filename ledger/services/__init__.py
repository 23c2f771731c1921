"""Services of the ledger (they write; ledger.selectors reads). Import from here:

from ledger.services import transaction_post, PostingInput
"""

from ledger.domain import PostingInput, TxInput
from ledger.services.metadata import account_metadata_delete, account_metadata_set
from ledger.services.posting import (
    BulkItemResult,
    PostResult,
    transaction_post,
    transaction_revert,
    transactions_post_bulk,
)
from ledger.services.sealing import chain_verify, transactions_seal

__all__ = [
    "BulkItemResult",
    "PostResult",
    "PostingInput",
    "TxInput",
    "account_metadata_delete",
    "account_metadata_set",
    "chain_verify",
    "transaction_post",
    "transaction_revert",
    "transactions_post_bulk",
    "transactions_seal",
]
