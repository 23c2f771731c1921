"""Root URLs: health, admin, the staff dashboard, the versioned API, the OpenAPI schema, Stripe
webhooks."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from ops.views import healthz, metrics, readyz
from stripe_gateway.views import stripe_webhook

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics, name="metrics"),
    path("admin/", admin.site.urls),
    path("staff/", include("staff.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/v1/ledger/", include("ledger.urls")),
    path("api/v1/", include("marketplace.urls")),
    path("api/v1/payouts/", include("payouts.urls")),
    path("api/v1/reconciliation/", include("reconciliation.urls")),
    path("api/v1/invoices/", include("invoicing.urls")),
    path("webhooks/stripe/", stripe_webhook, name="stripe-webhook"),
]
