"""Account metadata: set and delete keys; every change is kept in AccountMetadataChange."""

from __future__ import annotations

from collections.abc import Mapping

from django.db import connection, transaction
from django.utils import timezone

from ledger import lock_objects
from ledger.domain import validate_account_metadata, validate_address
from ledger.errors import AccountNotFound, InvalidMetadata, MetadataKeyNotFound
from ledger.models import Account, AccountMetadataChange
from ledger.services.script_reads import forget_metadata


def account_metadata_set(
    *,
    address: str,
    metadata: Mapping[str, str],
    actor: str = "",
    transaction_id: int | None = None,
) -> dict[str, str]:
    """Set keys on an account's metadata (creating the account on first use) and record each
    key whose value changed. Returns the account's whole metadata.

    Raises InvalidAddress, InvalidMetadata."""
    validate_address(address)
    values = validate_account_metadata(metadata)
    with transaction.atomic(durable=not connection.in_atomic_block):
        lock_objects.accounts_get_or_create(addresses=[address], now=timezone.now())
        account = lock_objects.account_lock(address=address)
        changed = {k: v for k, v in values.items() if account.metadata.get(k) != v}
        if changed:
            forget_metadata(address)  # a speculative run's guess would now be refused
            account.metadata = {**account.metadata, **changed}
            account.save(update_fields=["metadata"])
            AccountMetadataChange.objects.bulk_create(
                [
                    AccountMetadataChange(
                        account=account,
                        key=key,
                        value=value,
                        actor=actor,
                        transaction_id=transaction_id,
                    )
                    for key, value in sorted(changed.items())
                ]
            )
        return dict(account.metadata)


def account_metadata_delete(*, address: str, key: str, actor: str = "") -> dict[str, str]:
    """Delete one key of an account's metadata and record it. Returns the remaining metadata.

    Raises InvalidAddress, AccountNotFound, MetadataKeyNotFound."""
    validate_address(address)
    if not isinstance(key, str) or not key:
        raise InvalidMetadata(f"Invalid metadata key {key!r}.")
    with transaction.atomic(durable=not connection.in_atomic_block):
        try:
            account = lock_objects.account_lock(address=address)
        except Account.DoesNotExist:
            raise AccountNotFound(
                f"Account {address} does not exist.", extra={"address": address}
            ) from None
        if key not in account.metadata:
            raise MetadataKeyNotFound(
                f"Account {address} has no metadata key {key!r}.",
                extra={"address": address, "key": key},
            )
        remaining = {k: v for k, v in account.metadata.items() if k != key}
        forget_metadata(address)
        account.metadata = remaining
        account.save(update_fields=["metadata"])
        AccountMetadataChange.objects.create(account=account, key=key, value=None, actor=actor)
        return remaining
