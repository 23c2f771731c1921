"""The ledger's errors: every one a `LedgerError` (an `ApplicationError`) with a stable `code`.

APIs render them as `{"code", "message", ...extra}` with their `http_status`; commands print
the message on one line. Nothing a caller can send should surface as anything else.
"""

from typing import Any

from config.errors import ApplicationError


class LedgerError(ApplicationError):
    code = "ledger_error"


class InvalidAddress(LedgerError):
    code = "invalid_address"


class InvalidAsset(LedgerError):
    code = "invalid_asset"


class InvalidAmount(LedgerError):
    code = "invalid_amount"


class InvalidMetadata(LedgerError):
    code = "invalid_metadata"


class InvalidReference(LedgerError):
    code = "invalid_reference"


class InvalidTimestamp(LedgerError):
    code = "invalid_timestamp"


class InvalidPattern(LedgerError):
    code = "invalid_pattern"


class InvalidTransaction(LedgerError):
    """The request is not a transaction: no postings, both postings and a script, ..."""

    code = "invalid_transaction"


class InsufficientFunds(LedgerError):
    """A posting would take `account` below what its overdraft allows.

    `needed` is what the transaction takes out of the account beyond what it brings in before
    that point; `available` is the balance plus the allowed overdraft."""

    code = "insufficient_funds"

    def __init__(
        self,
        *,
        account: str,
        asset: str,
        needed: int,
        available: int,
        extra: dict[str, Any] | None = None,
    ):
        self.account, self.asset, self.needed, self.available = account, asset, needed, available
        super().__init__(
            f"Insufficient funds on {account} for {asset}: needs {needed}, {available} available.",
            extra={
                "account": account,
                "asset": asset,
                "needed": needed,
                "available": available,
                **(extra or {}),
            },
        )


class ReferenceConflict(LedgerError):
    """The reference exists with different content (postings, metadata, timestamp, ...)."""

    code = "reference_conflict"
    http_status = 409


class AlreadyReverted(LedgerError):
    code = "already_reverted"
    http_status = 409


class TransactionNotFound(LedgerError):
    code = "transaction_not_found"
    http_status = 404


class AccountNotFound(LedgerError):
    code = "account_not_found"
    http_status = 404


class MetadataKeyNotFound(LedgerError):
    code = "metadata_key_not_found"
    http_status = 404


class ScriptError(LedgerError):
    """A Numscript script failed to parse, type-check or run (missing funds excepted)."""

    code = "script_error"


class LedgerBusy(LedgerError):
    """Deadlocks or lock timeouts persisted after the bounded retries; safe to retry later."""

    code = "ledger_busy"
    http_status = 503
