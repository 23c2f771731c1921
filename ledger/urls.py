"""URLs of the ledger API, mounted under /api/v1/ledger/ by config.urls."""

from django.urls import path

from ledger import api

app_name = "ledger"

urlpatterns = [
    path("accounts/", api.AccountsView.as_view(), name="accounts"),
    path("accounts/<str:address>/", api.AccountDetailView.as_view(), name="account"),
    path(
        "accounts/<str:address>/metadata/",
        api.AccountMetadataView.as_view(),
        name="account-metadata",
    ),
    path(
        "accounts/<str:address>/metadata/<str:key>/",
        api.AccountMetadataKeyView.as_view(),
        name="account-metadata-key",
    ),
    path("transactions/", api.TransactionsView.as_view(), name="transactions"),
    path("transactions/bulk/", api.TransactionsBulkView.as_view(), name="transactions-bulk"),
    path(
        "transactions/<int:transaction_id>/",
        api.TransactionDetailView.as_view(),
        name="transaction",
    ),
    path(
        "transactions/<int:transaction_id>/revert/",
        api.TransactionRevertView.as_view(),
        name="transaction-revert",
    ),
    path("balances/", api.BalancesView.as_view(), name="balances"),
    path("balance-sheet/", api.BalanceSheetView.as_view(), name="balance-sheet"),
]
