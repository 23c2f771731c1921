"""The roles staff and services work under: Django groups, each with exactly the permissions
listed here (least privilege). A data migration applies them; `manage.py roles sync` applies
them again (idempotent) and `manage.py roles` prints them.

Money moves only through a named permission: `is_staff` alone lets a user read through the
API and sign in to the admin, nothing more. Superusers hold every permission."""

from __future__ import annotations

from typing import Any

SUPPORT = "Support"
MARKETING = "Marketing"
FINANCE = "Finance"
FINANCE_ADMIN = "Finance admin"
SERVICE_ACCOUNT = "Service account"

_INVOICES = ["invoicing.view_invoice", "invoicing.download_invoice"]
_READ_ORDERS = [
    "marketplace.view_order",
    "marketplace.view_customer",
    "marketplace.view_refund",
    "marketplace.view_restaurant",
    "marketplace.view_rider",
    "marketplace.view_dispute",
]
_READ_FINANCE = [
    *_READ_ORDERS,
    "marketplace.view_campaign",
    "marketplace.view_topup",
    "marketplace.view_anomaly",
    "stripe_gateway.view_stripeevent",
    "ledger.view_account",
    "ledger.view_transaction",
    "payouts.view_payout",
    "payouts.view_payoutpayee",
    "payouts.view_payeeholdchange",
    "reconciliation.view_reconciliationrun",
    "reconciliation.view_reconciliationitem",
    "reconciliation.view_stripebalancetransaction",
    "audit.view_auditentry",
    *_INVOICES,
]
_FINANCE = [
    *_READ_FINANCE,
    "marketplace.request_refund",
    "marketplace.approve_refund",
    "marketplace.create_topup",
    "marketplace.change_anomaly",
    "payouts.manage_payouts",
    "reconciliation.run_reconciliation",
    "reconciliation.apply_repairs",
]

ROLES: dict[str, list[str]] = {
    # Customer support: look orders up, request refunds (above the approval threshold they
    # wait for Finance).
    SUPPORT: [*_READ_ORDERS, *_INVOICES, "marketplace.request_refund"],
    # Coupon campaigns: create, fund (up to the budget), pause/resume/close.
    MARKETING: [
        "marketplace.view_campaign",
        "marketplace.view_order",
        "marketplace.view_restaurant",
        "marketplace.manage_campaigns",
    ],
    # Refund approval, top-ups, payouts, reconciliation repairs, the books.
    FINANCE: _FINANCE,
    # Finance plus what rewrites the books: reverts, manual postings, account metadata,
    # commissions and onboarding.
    FINANCE_ADMIN: [
        *_FINANCE,
        "ledger.post_transaction",
        "ledger.revert_transaction",
        "ledger.set_account_metadata",
        "marketplace.manage_payees",
    ],
    # The marketplace's own services (ordering, dispatch): place orders, assign riders,
    # deliver, cancel; read what they placed. No ledger writes, no refunds, no payouts.
    SERVICE_ACCOUNT: [
        "marketplace.manage_orders",
        "marketplace.view_order",
        "marketplace.view_restaurant",
        "marketplace.view_rider",
        "marketplace.view_customer",
    ],
}


def roles_sync(*, group_model: Any, permission_model: Any, strict: bool = True) -> dict[str, int]:
    """Give each role's group exactly its permissions (creating the group if needed).
    Works with the real models and with a migration's historical ones. Raises LookupError
    naming a permission that does not exist, unless `strict` is off (a migration that runs
    before a later app's models exist: a later roles migration completes the groups).
    Returns the number of permissions per role."""
    counts = {}
    for role, names in ROLES.items():
        wanted = []
        for name in sorted(set(names)):
            app_label, codename = name.split(".", 1)
            permission = permission_model.objects.filter(
                content_type__app_label=app_label, codename=codename
            ).first()
            if permission is None:
                if not strict:
                    continue
                raise LookupError(f"role {role}: no permission {name}")
            wanted.append(permission)
        group, _ = group_model.objects.get_or_create(name=role)
        group.permissions.set(wanted)
        counts[role] = len(wanted)
    return counts
