"""Tables of invoicing.

- `InvoicingProfile`: a restaurant's invoicing settings (default model, trust level, food tax
  rate, legal details), versioned: a change is a new row effective from a date, so an order is
  always judged by the profile in force when it was paid (a switch mid-month leaves earlier
  orders, and their documents, on the old model). Never updated (append-only by convention).
- `OrderInvoicing`: the model decided for one order (at payment, by `policy.model_decide`),
  frozen once a document of the order exists (a PostgreSQL trigger refuses the change).
- `NumberSeries`: the last number given per (issuer series, year); locked to number.
- `Invoice` and `InvoiceLine`: issued documents (invoices, credit notes, self-billing invoices,
  monthly commission invoices, rider statements). Inserted whole, numbered, in one transaction;
  never updated or deleted (PostgreSQL triggers, see invoicing/pgsql.py).
- `InvoicingAnomaly`: why a document could not be issued (missing tax rate, ...), one row per
  (kind, key).

References to marketplace rows (orders, restaurants) are not database foreign keys on purpose:
a `TRUNCATE marketplace_order CASCADE` (the test runner's flush of the marketplace tables)
would cascade into the immutable document tables, whose triggers refuse it. Orders and
restaurants are never deleted (PROTECT), so no reference can dangle.
"""

from __future__ import annotations

from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from marketplace.models import Order, Restaurant


class Model(models.TextChoices):
    A = "A", "A: customer commission"
    B = "B", "B: seller commission"
    C = "C", "C: merchant mode"


class InvoicingProfile(models.Model):
    restaurant = models.ForeignKey(
        Restaurant, on_delete=models.PROTECT, related_name="+", db_constraint=False
    )
    model = models.CharField(max_length=1, choices=Model.choices, default=Model.A)
    trust_level = models.IntegerField(default=0)
    # Food tax rate in basis points (1000 = 10%); NULL = not configured: nothing is issued for
    # this restaurant's orders until it is (an anomaly says so).
    food_tax_bps = models.IntegerField(null=True, blank=True)
    legal_name = models.CharField(max_length=200, blank=True, default="")
    address = models.CharField(max_length=300, blank=True, default="")
    tax_id = models.CharField(max_length=64, blank=True, default="")
    effective_from = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["restaurant_id", "effective_from", "id"]
        indexes = [models.Index(fields=["restaurant", "effective_from"], name="inv_profile_idx")]
        constraints = [
            models.CheckConstraint(
                condition=Q(food_tax_bps__isnull=True)
                | Q(food_tax_bps__gte=0, food_tax_bps__lte=10000),
                name="inv_profile_tax_range",
            ),
        ]

    def __str__(self) -> str:
        return f"restaurant {self.restaurant_id}: model {self.model} from {self.effective_from}"


class OrderInvoicing(models.Model):
    order = models.OneToOneField(
        Order, on_delete=models.PROTECT, related_name="+", db_constraint=False
    )
    model = models.CharField(max_length=1, choices=Model.choices)
    reason = models.CharField(max_length=200, blank=True, default="")  # the policy's words
    profile = models.ForeignKey(
        InvoicingProfile,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        # Profiles are never deleted (trigger): no index, and no per-row foreign-key check
        # (with its row lock on the profile) on the issuing hot path.
        db_index=False,
        db_constraint=False,
    )
    decided_at = models.DateTimeField(default=timezone.now)
    # The delivery's documents are issued (or there was nothing to document): the sweep skips it.
    documented = models.BooleanField(default=False)

    class Meta:
        ordering = ["order_id"]

    def __str__(self) -> str:
        return f"order {self.order_id}: model {self.model}"


class NumberSeries(models.Model):
    """The last number issued in a series and year. Incremented only under its row lock, in
    the transaction that inserts the documents: a rollback gives the numbers back."""

    series = models.CharField(max_length=16)  # P, R0007, D0012
    year = models.IntegerField()
    last_number = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["series", "year"], name="inv_series_year_uniq"),
            models.CheckConstraint(condition=Q(last_number__gte=0), name="inv_series_gte_0"),
        ]

    def __str__(self) -> str:
        return f"{self.series}-{self.year}: {self.last_number}"


class Invoice(models.Model):
    """An issued document. Never updated or deleted (triggers); corrections are credit notes."""

    class Kind(models.TextChoices):
        INVOICE = "invoice", "Invoice"
        CREDIT_NOTE = "credit_note", "Credit note"
        SELF_BILLING = "self_billing", "Self-billing invoice"  # model C: restaurant -> platform
        COMMISSION = "commission", "Monthly commission invoice"  # model B: platform -> restaurant
        RIDER_STATEMENT = "rider_statement", "Rider monthly self-billing statement"

    # Idempotency: one document per purpose ("order:42:A:restaurant", "refund:7:platform",
    # "commission:R0007:2026-11"...). A replayed issuance finds it and issues nothing.
    key = models.CharField(max_length=120)  # unique (inv_invoice_key_uniq)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    model = models.CharField(max_length=1, blank=True, default="")  # blank: rider statements
    series = models.CharField(max_length=16)
    year = models.IntegerField()
    number = models.BigIntegerField()
    # R0007-2026-000123: `series-year-number`, unique because (series, year, number) is and a
    # series has no "-" (no index of its own: nothing looks a document up by it).
    display_number = models.CharField(max_length=40)
    issuer = models.CharField(max_length=64)  # "platform", "restaurants:007", "riders:012"
    recipient = models.CharField(max_length=64)  # "customer:<id>", "platform", "restaurants:.."
    customer_facing = models.BooleanField(default=False)
    issuer_details = models.JSONField(default=dict)  # name, address, tax id at issue time
    recipient_details = models.JSONField(default=dict)
    legal_mention = models.TextField(blank=True, default="")
    order = models.ForeignKey(
        Order,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        db_constraint=False,
        db_index=False,  # inv_invoice_order_idx
    )
    period = models.DateField(null=True, blank=True)  # first day of the month (periodic docs)
    # The refund or dispute a credit note answers ("refund:7", "dispute:3"); blank otherwise.
    credit_event = models.CharField(max_length=40, blank=True, default="")
    original = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="credit_notes",
        db_index=False,  # inv_invoice_original_idx (credit notes only)
    )
    asset = models.CharField(max_length=32)
    total_gross = models.BigIntegerField()  # = sum of the lines' gross (tax included)
    total_tax = models.BigIntegerField()
    total_net = models.BigIntegerField()
    ledger_transactions = models.JSONField(default=list)  # ids of what it justifies
    issued_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        permissions = [("download_invoice", "Can download invoice PDFs")]
        # Each index costs every insert (the issuing hot path): no duplicates, no pattern-ops
        # twins, and partial indexes for what only some documents have.
        indexes = [
            models.Index(fields=["order"], name="inv_invoice_order_idx"),
            models.Index(fields=["issuer", "issued_at"], name="inv_invoice_issuer_idx"),
            models.Index(
                fields=["period", "kind"],
                name="inv_invoice_period_idx",
                condition=Q(period__isnull=False),
            ),
            models.Index(
                fields=["credit_event"],
                name="inv_invoice_credit_event_idx",
                condition=~Q(credit_event=""),
            ),
            models.Index(
                fields=["original"],
                name="inv_invoice_original_idx",
                condition=Q(original__isnull=False),
            ),
        ]
        constraints = [
            models.UniqueConstraint(fields=["key"], name="inv_invoice_key_uniq"),
            models.UniqueConstraint(
                fields=["series", "year", "number"], name="inv_invoice_number_uniq"
            ),
            models.CheckConstraint(condition=Q(number__gt=0), name="inv_invoice_number_gt_0"),
            models.CheckConstraint(
                condition=Q(total_gross=F("total_net") + F("total_tax")),
                name="inv_invoice_totals_add_up",
            ),
            models.CheckConstraint(
                condition=~Q(kind="credit_note") | Q(original__isnull=False),
                name="inv_credit_note_has_original",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.display_number}"


class InvoiceLine(models.Model):
    """One line: a tax-inclusive gross amount, its tax and net (net + tax = gross), the
    ledger account whose movement it justifies (`account`) and, for a line one party pays
    another, the account it comes out of (`counter_account`); blank for a line that restates
    money another document justifies. Never updated or deleted."""

    invoice = models.ForeignKey(
        Invoice,
        on_delete=models.PROTECT,
        related_name="lines",
        db_index=False,  # inv_line_position_uniq (invoice, position) serves it
    )
    position = models.IntegerField()
    order = models.ForeignKey(
        Order,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        db_constraint=False,
        db_index=False,  # inv_line_order_idx
    )
    kind = models.CharField(max_length=20)  # food, discount, service, delivery, refund...
    description = models.CharField(max_length=300)
    gross = models.BigIntegerField()
    tax_bps = models.IntegerField()
    tax = models.BigIntegerField()
    net = models.BigIntegerField()
    account = models.CharField(max_length=64, blank=True, default="")
    counter_account = models.CharField(max_length=64, blank=True, default="")
    ledger_transaction_id = models.BigIntegerField(null=True, blank=True)
    # On a credit note: the position of the original's line this line reduces (it carries
    # that line's tax rate); a credit note never takes more from a line than remains on it.
    original_position = models.IntegerField(null=True, blank=True)

    class Meta:
        ordering = ["invoice_id", "position"]
        constraints = [
            models.UniqueConstraint(fields=["invoice", "position"], name="inv_line_position_uniq"),
            models.CheckConstraint(condition=Q(gross=F("net") + F("tax")), name="inv_line_adds_up"),
            models.CheckConstraint(
                condition=Q(tax_bps__gte=0, tax_bps__lte=10000), name="inv_line_tax_range"
            ),
        ]
        indexes = [models.Index(fields=["order"], name="inv_line_order_idx")]

    def __str__(self) -> str:
        return f"{self.invoice_id}.{self.position} {self.kind} {self.gross}"


class InvoicingAnomaly(models.Model):
    kind = models.CharField(max_length=64)
    key = models.CharField(max_length=120)
    order = models.ForeignKey(
        Order,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_constraint=False,
    )
    message = models.TextField()
    resolved = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "invoicing anomalies"
        constraints = [
            models.UniqueConstraint(fields=["kind", "key"], name="inv_anomaly_kind_key_uniq"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.key}"
