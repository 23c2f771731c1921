"""URLs of the reconciliation API, mounted under /api/v1/reconciliation/ by config.urls."""

from django.urls import path

from reconciliation import api

app_name = "reconciliation"

urlpatterns = [
    path("runs/", api.RunsView.as_view(), name="runs"),
    path("runs/<int:run_id>/", api.RunDetailView.as_view(), name="run"),
    path("runs/<int:run_id>/items/", api.RunItemsView.as_view(), name="run-items"),
    path("runs/<int:run_id>/items.csv", api.RunItemsCsvView.as_view(), name="run-items-csv"),
]
