"""The dashboard's URLs, mounted at /staff/. The ids in them are stable deep links an agent
can paste into a ticket (README, "The staff dashboard")."""

from django.urls import include, path

from staff.views import campaigns, pages, refunds

app_name = "staff"

urlpatterns = [
    path("", pages.HomeView.as_view(), name="home"),
    path("login/", pages.LoginView.as_view(), name="login"),
    path("logout/", pages.LogoutView.as_view(), name="logout"),
    path("search/", pages.SearchView.as_view(), name="search"),
    path("orders/", pages.OrdersView.as_view(), name="orders"),
    path("orders/<int:order_id>/", pages.OrderView.as_view(), name="order"),
    path("orders/<int:order_id>/refund/", refunds.RefundDialogView.as_view(), name="refund-new"),
    path("customers/<int:customer_id>/", pages.CustomerView.as_view(), name="customer"),
    path("refunds/", refunds.ApprovalsView.as_view(), name="approvals"),
    path("refunds/<int:refund_id>/", refunds.RefundView.as_view(), name="refund"),
    path(
        "refunds/<int:refund_id>/status.json",
        refunds.RefundStatusView.as_view(),
        name="refund-status",
    ),
    path(
        "refunds/<int:refund_id>/approve/",
        refunds.RefundDecideView.as_view(decision="approve"),
        name="refund-approve",
    ),
    path(
        "refunds/<int:refund_id>/reject/",
        refunds.RefundDecideView.as_view(decision="reject"),
        name="refund-reject",
    ),
    path("campaigns/", campaigns.CampaignsView.as_view(), name="campaigns"),
    path("campaigns/new/", campaigns.CampaignCreateView.as_view(), name="campaign-new"),
    path("campaigns/<int:campaign_id>/", campaigns.CampaignView.as_view(), name="campaign"),
    *[
        path(
            f"campaigns/<int:campaign_id>/{action}/",
            campaigns.CampaignActionView.as_view(action=action),
            name=f"campaign-{action}",
        )
        for action in ("fund", "pause", "resume", "close")
    ],
    path("audit/", pages.AuditView.as_view(), name="audit"),
    # The finance pages (ledger, books, payouts, reconciliation, risk): staff/finance_urls.py
    path("", include("staff.finance_urls")),
]
