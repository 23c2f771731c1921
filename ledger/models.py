"""Tables of the ledger.

Append-only (PostgreSQL triggers refuse UPDATE, DELETE and TRUNCATE, see ledger/pgsql.py):
`Transaction`, `Posting`, `Seal`, `AccountMetadataChange`. `Account` rows are never deleted and
their address never changes (triggers too); only their metadata is updated, and every change is
recorded in `AccountMetadataChange`. `Balance` rows are the one mutable cache: per (account,
asset, shard) input and output volumes, updated in the same database transaction as the
postings; an account's balance is the sum over its (at most LEDGER_BALANCE_SHARDS) shard rows.
`CheckpointRun` and `Checkpoint` are derived data (past balances at chosen instants, written by
a periodic task and rebuildable from the postings at any time: `manage.py ledger checkpoints
rebuild`); they are not part of the hash chain and nothing else depends on them.

Foreign keys from postings and balances to accounts are NOT database constraints on purpose:
every posting on a hot account would take a FOR KEY SHARE lock on that one account row, and
four concurrent writers turn that into a multixact per transaction. Integrity holds without
them: account rows are created before they are referenced (same function, same transaction)
and can never be deleted (trigger), so an id can never dangle.
"""

from django.db import models
from django.db.models import Q
from django.db.models.functions import Now

from ledger.domain import ADDRESS_RE, MAX_ADDRESS_LENGTH, MAX_ASSET_LENGTH, MAX_REFERENCE_LENGTH


class Account(models.Model):
    """An address, created on first use. Never deleted; the address never changes."""

    id = models.BigAutoField(primary_key=True)
    address = models.CharField(max_length=MAX_ADDRESS_LENGTH, unique=True)
    metadata = models.JSONField(default=dict)  # string -> string; history in AccountMetadataChange
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        permissions = [
            ("set_account_metadata", "Can set or delete ledger account metadata"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(address__regex=ADDRESS_RE.pattern), name="ledger_account_address_valid"
            ),
        ]

    def __str__(self) -> str:
        return self.address


class Transaction(models.Model):
    """One or more postings, applied atomically. Never updated or deleted once inserted."""

    id = models.BigAutoField(primary_key=True)
    # The idempotency key: posting it again returns this transaction (or a conflict).
    # NULL, not "": a partial unique index covers only transactions that have a reference.
    reference = models.CharField(max_length=MAX_REFERENCE_LENGTH, null=True)  # noqa: DJ001
    timestamp = models.DateTimeField(db_index=True)  # effective date; may be in the past
    inserted_at = models.DateTimeField(db_default=Now())  # when the ledger recorded it
    metadata = models.JSONField(default=dict)
    # SHA-256 of the request (postings or script+vars, metadata, reverted id): tells a replay
    # from a conflicting reuse of the reference. Null when there is no reference.
    idempotency_hash = models.CharField(max_length=64, null=True)  # noqa: DJ001
    # The transaction this one reverts; unique, so a transaction is reverted at most once.
    reverts = models.ForeignKey(
        "self", null=True, on_delete=models.PROTECT, related_name="reverted_by", db_index=False
    )

    class Meta:
        permissions = [
            ("post_transaction", "Can post ledger transactions (API, bulk, scripts)"),
            ("revert_transaction", "Can revert ledger transactions"),
        ]
        # Partial unique indexes: most transactions have neither, so they cost those nothing.
        # (+ a GIN jsonb_path_ops index on metadata, PostgreSQL only: ledger/pgsql.py)
        constraints = [
            models.UniqueConstraint(
                fields=["reference"],
                condition=Q(reference__isnull=False),
                name="ledger_transaction_reference_uniq",
            ),
            models.UniqueConstraint(
                fields=["reverts"],
                condition=Q(reverts__isnull=False),
                name="ledger_transaction_reverts_uniq",
            ),
        ]

    def __str__(self) -> str:
        return f"tx {self.id}"


class Posting(models.Model):
    """`amount` of `asset` from `source` to `destination`. Never updated or deleted."""

    pk = models.CompositePrimaryKey("transaction_id", "index")
    transaction = models.ForeignKey(
        Transaction, on_delete=models.PROTECT, related_name="postings", db_index=False
    )  # the primary key (transaction_id, index) serves lookups by transaction
    index = models.IntegerField()  # position in its transaction, from 0
    source = models.ForeignKey(
        Account, on_delete=models.PROTECT, related_name="+", db_constraint=False, db_index=False
    )  # indexed by (source, asset, timestamp) below
    destination = models.ForeignKey(
        Account, on_delete=models.PROTECT, related_name="+", db_constraint=False, db_index=False
    )
    asset = models.CharField(max_length=MAX_ASSET_LENGTH)
    amount = models.BigIntegerField()
    timestamp = models.DateTimeField()  # the transaction's effective date, for past balances

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="ledger_posting_amount_gt_0"),
            models.CheckConstraint(condition=Q(index__gte=0), name="ledger_posting_index_gte_0"),
        ]
        # (indexes below)
        indexes = [
            # amount is the last key column (not INCLUDE, which SQLite lacks) so that past
            # balances and volumes are index-only scans
            models.Index(
                fields=["source", "asset", "timestamp", "amount"],
                name="ledger_post_src_asset_ts",
            ),
            models.Index(
                fields=["destination", "asset", "timestamp", "amount"],
                name="ledger_post_dst_asset_ts",
            ),
        ]

    def __str__(self) -> str:
        return f"posting {self.transaction_id}.{self.index}"


class Balance(models.Model):
    """Volumes of one shard of one (account, asset). balance = sum(input - output) over shards.

    An account whose funds a posting must check has all its shard rows locked; an account that
    is only credited (or may overdraw without bound) is updated on one shard picked by the
    writer's connection, without reading: hot accounts take concurrent writers."""

    pk = models.CompositePrimaryKey("account_id", "asset", "shard")
    account = models.ForeignKey(
        Account,
        on_delete=models.PROTECT,
        related_name="balances",
        db_constraint=False,
        db_index=False,  # the primary key (account_id, asset, shard) serves it
    )
    asset = models.CharField(max_length=MAX_ASSET_LENGTH)
    shard = models.SmallIntegerField()
    input = models.BigIntegerField(default=0)
    output = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(input__gte=0) & Q(output__gte=0) & Q(shard__gte=0),
                name="ledger_balance_volumes_gte_0",
            ),
        ]

    def __str__(self) -> str:
        return f"balance {self.account_id} {self.asset} #{self.shard}"


class AccountMetadataChange(models.Model):
    """One set (value) or delete (value null) of an account metadata key. Append-only."""

    id = models.BigAutoField(primary_key=True)
    account = models.ForeignKey(
        Account, on_delete=models.PROTECT, related_name="metadata_changes", db_index=False
    )  # indexed by (account, id) below
    key = models.CharField(max_length=255)
    value = models.TextField(null=True)  # noqa: DJ001  (null: the key was deleted, "" is a value)
    changed_at = models.DateTimeField(db_default=Now())
    # set when a Numscript transaction's set_account_meta() made the change
    transaction = models.ForeignKey(
        Transaction, null=True, on_delete=models.PROTECT, related_name="+"
    )
    actor = models.CharField(max_length=150, blank=True, default="")

    class Meta:
        indexes = [models.Index(fields=["account", "id"], name="ledger_meta_change_acct")]

    def __str__(self) -> str:
        return f"metadata {self.account_id}.{self.key}"


class Seal(models.Model):
    """A link of the hash chain: seq n seals one transaction, hash = SHA-256(prev_hash + "\\n" +
    canonical(transaction)). Appended after commit, in order, by a single sealer. Append-only."""

    seq = models.BigIntegerField(primary_key=True)  # 1, 2, 3, ... with no gap
    transaction = models.OneToOneField(Transaction, on_delete=models.PROTECT, related_name="seal")
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)
    sealed_at = models.DateTimeField(db_default=Now())

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(seq__gte=1), name="ledger_seal_seq_gte_1"),
        ]

    def __str__(self) -> str:
        return f"seal {self.seq}"


class Unsealed(models.Model):
    """The sealer's queue: one row per committed transaction not yet sealed, inserted in the
    same database transaction as the transaction, deleted by the sealer when it seals it."""

    # No foreign-key constraint: a queue row is inserted by the same statement as its
    # transaction, which can never be deleted; the check would only cost every posting.
    transaction = models.OneToOneField(
        Transaction,
        primary_key=True,
        on_delete=models.PROTECT,
        related_name="+",
        db_constraint=False,
    )

    def __str__(self) -> str:
        return f"unsealed {self.transaction_id}"


class CheckpointRun(models.Model):
    """Balances at the instant `at`: one `Checkpoint` row per (account, asset) whose balance
    at `at` was not zero (an account with no row had 0). Derived data (ledger/services/checkpoints.py).

    A run counts the postings with `timestamp <= at` of the transactions with
    `id <= covers_tx_id`; every run covers the same id (the task raises them together, in one
    database transaction, folding in the postings between), so a reader adds the postings of
    later transactions back-dated to `at` or before, and those after `at`."""

    id = models.BigAutoField(primary_key=True)
    at = models.DateTimeField(unique=True)
    covers_tx_id = models.BigIntegerField()  # every transaction id <= this is counted
    created_at = models.DateTimeField(db_default=Now())

    def __str__(self) -> str:
        return f"checkpoint run {self.id} at {self.at.isoformat()}"


class Checkpoint(models.Model):
    """The balance (input - output) of one (account, asset) at its run's instant."""

    pk = models.CompositePrimaryKey("run_id", "account_id", "asset")
    run = models.ForeignKey(
        CheckpointRun, on_delete=models.CASCADE, related_name="+", db_index=False
    )  # the primary key (run, account, asset) serves lookups by run
    account = models.ForeignKey(
        Account, on_delete=models.PROTECT, related_name="+", db_constraint=False, db_index=False
    )
    asset = models.CharField(max_length=MAX_ASSET_LENGTH)
    balance = models.BigIntegerField()

    def __str__(self) -> str:
        return f"checkpoint {self.run_id} {self.account_id} {self.asset}"
