"""Shared fixtures. Tests run against real PostgreSQL and Redis (see `make test`)."""

import pytest
from django.conf import settings


@pytest.fixture
def redis_url() -> str:
    return settings.REDIS_URL
