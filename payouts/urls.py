"""URLs of the payouts API, mounted under /api/v1/payouts/ by config.urls."""

from django.urls import path

from payouts import api

app_name = "payouts"

urlpatterns = [
    path("", api.PayoutsView.as_view(), name="payouts"),
    path("status/", api.StatusView.as_view(), name="status"),
    path("run/", api.RunView.as_view(), name="run"),
    path("<uuid:payout_id>/", api.PayoutDetailView.as_view(), name="payout"),
    path("<uuid:payout_id>/cancel/", api.PayoutCancelView.as_view(), name="cancel"),
    path("<uuid:payout_id>/retry/", api.PayoutRetryView.as_view(), name="retry"),
    path("<uuid:payout_id>/reverse/", api.PayoutReverseView.as_view(), name="reverse"),
    path("payees/<str:kind>/<int:payee_id>/hold/", api.PayeeHoldView.as_view(), name="hold"),
    path(
        "payees/<str:kind>/<int:payee_id>/release/",
        api.PayeeReleaseView.as_view(),
        name="release",
    ),
]
