"""The parties of the marketplace: restaurants and riders (payees, each a Stripe connected
account and a ledger account), and customers (who pay).

The ledger account of a payee is derived from its primary key (`restaurants:001`), so it never
changes; what the ledger owes a payee is read from the ledger (`marketplace.selectors`), never
stored here. Rows are written only by `marketplace.services.parties`.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone

# A Numscript portion as the split template reads it from the account's metadata:
# "15%", "12.5%" or "3/20". Range (0..100%) is checked by the service.
PORTION_REGEX = r"^([0-9]{1,3}(\.[0-9]{1,4})?%|[0-9]{1,6}/[0-9]{1,6})$"
ASSET_REGEX = r"^[A-Z][A-Z0-9]{0,16}(/[0-9]{1,6})?$"
DEFAULT_ASSET = "USD/2"
DEFAULT_COMMISSION = "15%"


def ledger_id(pk: int) -> str:
    """The id segment of a payee's ledger address: zero-padded to at least 3 digits."""
    return f"{pk:03d}"


class Payee(models.Model):
    """Fields shared by restaurants and riders (abstract)."""

    name = models.CharField(max_length=200)
    email = models.EmailField(blank=True, default="")
    # The Stripe Connect (Express) account transfers go to; blank until onboarding has
    # created it at Stripe (the row is committed first, then Stripe is called).
    stripe_account_id = models.CharField(max_length=255, blank=True, default="")
    asset = models.CharField(max_length=32, default=DEFAULT_ASSET)
    # Staff hold: the payout scheduler skips this payee while set.
    payouts_on_hold = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)

    LEDGER_PREFIX = ""

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return f"{self.name} ({self.ledger_address if self.pk else 'unsaved'})"

    @property
    def ledger_address(self) -> str:
        """`restaurants:001` / `riders:042`: the payee's account, what the platform owes it."""
        if self.pk is None:
            raise ValueError("an unsaved payee has no ledger address")
        return f"{self.LEDGER_PREFIX}:{ledger_id(self.pk)}"


def _payee_constraints(prefix: str) -> list[models.BaseConstraint]:
    return [
        models.UniqueConstraint(
            fields=["stripe_account_id"],
            condition=~Q(stripe_account_id=""),
            name=f"{prefix}_stripe_account_uniq",
        ),
        models.CheckConstraint(
            condition=Q(stripe_account_id="") | Q(stripe_account_id__startswith="acct_"),
            name=f"{prefix}_stripe_account_is_acct",
        ),
        models.CheckConstraint(condition=Q(asset__regex=ASSET_REGEX), name=f"{prefix}_asset_valid"),
        models.CheckConstraint(condition=~Q(name=""), name=f"{prefix}_name_not_empty"),
    ]


class Restaurant(Payee):
    LEDGER_PREFIX = "restaurants"

    # The platform's commission on the order subtotal, a Numscript portion. The copy the
    # split template reads is the ledger account's metadata `commission` (kept in sync by
    # `restaurant_commission_set`); this column is what staff see and edit.
    commission = models.CharField(max_length=16, default=DEFAULT_COMMISSION)

    class Meta:
        permissions = [
            ("manage_payees", "Can onboard restaurants and riders and change commissions"),
        ]
        db_table = "marketplace_restaurant"
        ordering = ["id"]
        constraints = [
            *_payee_constraints("restaurant"),
            models.CheckConstraint(
                condition=Q(commission__regex=PORTION_REGEX), name="restaurant_commission_portion"
            ),
        ]


class Rider(Payee):
    LEDGER_PREFIX = "riders"

    class Meta:
        db_table = "marketplace_rider"
        ordering = ["id"]
        constraints = _payee_constraints("rider")


class Customer(models.Model):
    name = models.CharField(max_length=200, blank=True, default="")
    email = models.EmailField(blank=True, default="")
    stripe_customer_id = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "marketplace_customer"
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["stripe_customer_id"],
                condition=~Q(stripe_customer_id=""),
                name="customer_stripe_id_uniq",
            ),
            models.CheckConstraint(
                condition=Q(stripe_customer_id="") | Q(stripe_customer_id__startswith="cus_"),
                name="customer_stripe_id_is_cus",
            ),
        ]

    def __str__(self) -> str:
        return self.name or self.email or f"customer {self.pk}"
