"""URLs of the payouts app, mounted under /api/v1/ by config.urls."""

from django.urls import path  # noqa: F401

urlpatterns: list = []
