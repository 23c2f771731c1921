"""The ledger explorer: accounts by pattern as a tree, one account (balances, point-in-time
balance, volumes for a period, postings newest first with a running balance), one
transaction (postings, metadata, reference, effective vs inserted time, its revert, its seal),
search, and revert (Finance admin: `ledger.revert_transaction`, through the ledger's service
and the same `ledger.revert` audit row the API writes)."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse

from audit.services import audit_record
from ledger.errors import AlreadyReverted, InsufficientFunds
from ledger.models import Transaction
from ledger.services import transaction_revert
from staff import ledger_explorer as explorer
from staff.views.base import StaffView, not_found
from staff.views.finance_base import FINANCE_READ, ConfirmedActionView, InputError, when_parse


class LedgerHomeView(StaffView):
    permissions = FINANCE_READ

    def get(self, request: HttpRequest) -> HttpResponse:
        pattern = str(request.GET.get("pattern", "")).strip()[:300]
        context: dict[str, Any] = {"pattern": pattern}
        status = 200
        if pattern:
            try:
                context["tree"] = explorer.accounts_tree(pattern=pattern)
            except explorer.ExplorerError as exc:
                context["error"], status = str(exc), 400
        return render(request, "staff/ledger.html", context, status=status)


class LedgerSearchView(StaffView):
    permissions = FINANCE_READ

    def get(self, request: HttpRequest) -> HttpResponse:
        q = str(request.GET.get("q", "")).strip()[:255]
        try:
            found = explorer.transactions_search(query=q)
        except explorer.ExplorerError as exc:
            return render(
                request, "staff/ledger_search.html", {"q": q, "error": str(exc)}, status=400
            )
        if len(found) == 1:
            return redirect("staff:ledger-transaction", tx_id=str(found[0].pk))
        return render(request, "staff/ledger_search.html", {"q": q, "found": found})


class AccountView(StaffView):
    permissions = FINANCE_READ

    def get(self, request: HttpRequest, address: str) -> HttpResponse:
        try:
            account = explorer.account_find(address=address)
        except explorer.ExplorerError as exc:
            return render(request, "staff/ledger.html", {"error": str(exc)}, status=400)
        if account is None:
            return not_found(request, f"There is no ledger account {address}.")
        assets = explorer.account_assets(account=account)
        asset = str(request.GET.get("asset", "")) or (sorted(assets)[0] if assets else "USD/2")
        if asset not in assets:
            asset = sorted(assets)[0] if assets else "USD/2"
        context: dict[str, Any] = {"account": account, "assets": assets, "asset": asset}
        status = 200
        try:
            at = when_parse(request.GET.get("at"), name="Balance at", end_of_day=True)
            start = when_parse(request.GET.get("start"), name="From")
            end = when_parse(request.GET.get("end"), name="To", end_of_day=True)
            if start and end and end <= start:
                raise InputError("The period is empty: “To” must be after “From”.")
            context["page"] = explorer.account_postings(
                account=account, asset=asset, cursor=request.GET.get("cursor") or None
            )
        except (InputError, explorer.ExplorerError) as exc:
            context["error"], status = str(exc), 400
            at = start = end = None
        if at is not None:
            context["at"] = at
            context["balance_at"] = explorer.balance_get(
                address=account.address, asset=asset, at=at
            )
        if start is not None or end is not None:
            context["period"] = (start, end)
            context["volumes"] = explorer.account_volumes(
                address=account.address, asset=asset, start=start, end=end
            )
        context["query"] = {k: request.GET.get(k, "") for k in ("at", "start", "end")}
        return render(request, "staff/ledger_account.html", context, status=status)


class TransactionPageView(StaffView):
    permissions = FINANCE_READ

    def get(self, request: HttpRequest, tx_id: str) -> HttpResponse:
        try:
            pk = explorer.transaction_id_check(tx_id)
        except explorer.ExplorerError as exc:
            return not_found(request, str(exc))
        view = explorer.transaction_view(transaction_id=pk)
        if view is None:
            return not_found(request, f"There is no transaction {pk}.")
        return render(
            request,
            "staff/ledger_transaction.html",
            {
                "v": view,
                "tx": view.tx,
                "postings": list(view.tx.postings.all()),
                "metadata": sorted((view.tx.metadata or {}).items()),
                "can_revert": request.user.has_perm("ledger.revert_transaction"),
            },
        )


class RevertView(ConfirmedActionView):
    permissions = (*FINANCE_READ, "ledger.revert_transaction")
    verb = "revert"

    def target(self, request: HttpRequest, **kwargs: Any) -> Transaction | None:
        try:
            pk = explorer.transaction_id_check(kwargs["tx_id"])
        except explorer.ExplorerError:
            return None
        return Transaction.objects.filter(pk=pk).first()

    def title(self, obj: Any) -> str:
        return f"Revert transaction {obj.pk}"

    def done_url(self, obj: Any) -> str:
        return reverse("staff:ledger-transaction", args=[str(obj.pk)])

    def _refuse_reverted(self, tx: Transaction) -> None:
        by = explorer.transaction_reverted_by(transaction_id=tx.pk)
        if by is not None:
            raise AlreadyReverted(
                f"Transaction {tx.pk} is already reverted (by transaction {by}): nothing to do.",
                extra={"transaction_id": tx.pk},
            )

    def _revert(self, request: HttpRequest, obj: Transaction, reason: str, **kw: Any) -> Any:
        """The one call both the preview (dry_run=True) and the confirmation make, with the
        same arguments: what the preview shows is what the revert writes."""
        return transaction_revert(
            transaction_id=obj.pk,
            reference=f"staff-revert:{obj.pk}",
            metadata={"reason": reason, "reverted_by": request.user.get_username()},
            **kw,
        )

    def preview(self, request: HttpRequest, obj: Any, reason: str) -> dict[str, Any]:
        self._refuse_reverted(obj)
        try:
            # The ledger's revert in dry-run mode: its inverse postings, its funds checks
            # under its locks, rolled back. Nothing is written.
            dry = self._revert(request, obj, reason, dry_run=True)
        except InsufficientFunds as exc:
            raise InputError(
                f"The ledger would refuse this revert as things stand: {exc.message} "
                "Nothing was written."
            ) from None
        if dry.replayed:  # a revert with our reference exists already
            raise AlreadyReverted(
                f"Transaction {obj.pk} is already reverted (by transaction "
                f"{dry.transaction.pk}): nothing to do.",
                extra={"transaction_id": obj.pk},
            )
        return {
            "postings": [
                {
                    "source": p.source,
                    "destination": p.destination,
                    "asset": p.asset,
                    "amount": p.amount,
                }
                for p in dry.postings
            ],
            "warnings": (
                [f"This transaction itself reverts transaction {obj.reverts_id}."]
                if obj.reverts_id
                else []
            ),
            "summary": f"Post the inverse of transaction {obj.pk} ({len(dry.postings)} "
            "posting(s), the ledger's own dry run of this revert), referencing it. Reason "
            "recorded in its metadata and the audit trail.",
        }

    def perform(self, request: HttpRequest, obj: Any, reason: str) -> str:
        self._refuse_reverted(obj)
        # The API's path: the ledger's service and its `ledger.revert` audit row, one
        # database transaction (the row exists if and only if the revert happened).
        with transaction.atomic(durable=True):
            result = self._revert(request, obj, reason)
            if not result.replayed:
                tx = result.transaction
                audit_record(
                    actor=request.user,
                    action="ledger.revert",
                    object_type="ledger.transaction",
                    object_id=tx.pk,
                    data={
                        "reference": tx.reference,
                        "reverts": tx.reverts_id,
                        "reason": reason,
                        "postings": [p.as_dict() for p in result.postings],
                    },
                )
        return f"Transaction {obj.pk} reverted by transaction {result.transaction.pk}."
