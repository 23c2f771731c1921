"""URLs of the marketplace app, mounted under /api/v1/ by config.urls."""

from django.urls import path

from marketplace.api import views as v
from marketplace.models import Rider

app_name = "marketplace"

urlpatterns = [
    path("restaurants/", v.RestaurantsView.as_view(), name="restaurants"),
    path("restaurants/<int:pk>/", v.RestaurantDetailView.as_view(), name="restaurant"),
    path(
        "restaurants/<int:pk>/balance/",
        v.PayeeBalanceView.as_view(),
        name="restaurant-balance",
    ),
    path(
        "restaurants/<int:pk>/commission/",
        v.RestaurantCommissionView.as_view(),
        name="restaurant-commission",
    ),
    path("riders/", v.RidersView.as_view(), name="riders"),
    path("riders/<int:pk>/", v.RiderDetailView.as_view(), name="rider"),
    path("riders/<int:pk>/balance/", v.PayeeBalanceView.as_view(model=Rider), name="rider-balance"),
    path("orders/", v.OrdersView.as_view(), name="orders"),
    path("orders/<int:pk>/", v.OrderDetailView.as_view(), name="order"),
    path(
        "orders/<int:pk>/payment_intent/",
        v.OrderPaymentIntentView.as_view(),
        name="order-payment-intent",
    ),
    path(
        "orders/<int:pk>/assign_rider/",
        v.OrderAssignRiderView.as_view(),
        name="order-assign-rider",
    ),
    path("orders/<int:pk>/deliver/", v.OrderDeliverView.as_view(), name="order-deliver"),
    path("orders/<int:pk>/cancel/", v.OrderCancelView.as_view(), name="order-cancel"),
    path("orders/<int:pk>/refunds/", v.OrderRefundsView.as_view(), name="order-refunds"),
    path("refunds/<int:pk>/", v.RefundDetailView.as_view(), name="refund"),
    path("refunds/<int:pk>/approve/", v.RefundApproveView.as_view(), name="refund-approve"),
    path("refunds/<int:pk>/reject/", v.RefundRejectView.as_view(), name="refund-reject"),
    path("campaigns/", v.CampaignsView.as_view(), name="campaigns"),
    path("campaigns/<int:pk>/", v.CampaignDetailView.as_view(), name="campaign"),
    path("campaigns/<int:pk>/fund/", v.CampaignFundView.as_view(), name="campaign-fund"),
    path("campaigns/<int:pk>/pause/", v.CampaignPauseView.as_view(), name="campaign-pause"),
    path(
        "campaigns/<int:pk>/resume/",
        v.CampaignPauseView.as_view(paused=False),
        name="campaign-resume",
    ),
    path("campaigns/<int:pk>/close/", v.CampaignCloseView.as_view(), name="campaign-close"),
    path("topups/", v.TopupsView.as_view(), name="topups"),
    path("books/payees/", v.PayeesBooksView.as_view(), name="books-payees"),
    path("books/owed/", v.OwedView.as_view(), name="books-owed"),
    path("books/balance_sheet/", v.BalanceSheetView.as_view(), name="books-balance-sheet"),
    path("books/risk/", v.RiskView.as_view(), name="books-risk"),
    path("anomalies/", v.AnomaliesView.as_view(), name="anomalies"),
]
