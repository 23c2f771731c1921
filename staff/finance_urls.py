"""The finance pages' URLs, included by staff/urls.py under /staff/ (same `staff:` names)."""

from django.urls import path

from staff.views import books, ledger, payouts, reconciliation, risk

urlpatterns = [
    path("ledger/", ledger.LedgerHomeView.as_view(), name="ledger"),
    path("ledger/search/", ledger.LedgerSearchView.as_view(), name="ledger-search"),
    path("ledger/accounts/<str:address>/", ledger.AccountView.as_view(), name="ledger-account"),
    path(
        "ledger/transactions/<str:tx_id>/",
        ledger.TransactionPageView.as_view(),
        name="ledger-transaction",
    ),
    path(
        "ledger/transactions/<str:tx_id>/revert/",
        ledger.RevertView.as_view(),
        name="ledger-revert",
    ),
    path("books/", books.BooksView.as_view(), name="books"),
    path("books/income/", books.IncomeView.as_view(), name="books-income"),
    path("books/owed/", books.OwedView.as_view(), name="books-owed"),
    path("payouts/", payouts.PayoutsBoardView.as_view(), name="payouts"),
    path("payouts/<str:payout_id>/", payouts.PayoutView.as_view(), name="payout"),
    *[
        path(
            f"payouts/<str:payout_id>/{verb}/",
            payouts.PayoutActionView.as_view(verb=verb),
            name=f"payout-{verb}",
        )
        for verb in ("cancel", "retry", "reverse")
    ],
    *[
        path(
            f"payees/<str:kind>/<int:payee_id>/{verb}/",
            payouts.PayeeHoldView.as_view(verb=verb),
            name=f"payee-{verb}",
        )
        for verb in ("hold", "release")
    ],
    path("reconciliation/", reconciliation.RunsView.as_view(), name="reconciliation"),
    path(
        "reconciliation/<int:run_id>/", reconciliation.RunView.as_view(), name="reconciliation-run"
    ),
    path(
        "reconciliation/<int:run_id>/repairs/",
        reconciliation.RepairsView.as_view(),
        name="reconciliation-repairs",
    ),
    path(
        "reconciliation/<int:run_id>/rerun/",
        reconciliation.RerunView.as_view(),
        name="reconciliation-rerun",
    ),
    path("risk/", risk.RiskView.as_view(), name="risk"),
]
