"""Fixtures of the REST API tests: users with given permissions, API clients, tasks, pictures."""

from __future__ import annotations

import pytest
from django.core.cache import cache

from tests.api.helpers import (
    make_generated_image,
    make_task,
    make_user,
    token_client,
)


@pytest.fixture(autouse=True)
def _clear_throttle_cache():
    """Throttle counters live in the default cache: every test starts from zero."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def superuser(db):
    return make_user("boss", superuser=True)


@pytest.fixture
def api(superuser):
    """An API client authenticated as a superuser with a DRF token."""
    return token_client(superuser)


@pytest.fixture
def product(make_product):
    return make_product()


@pytest.fixture
def task_factory(db):
    return make_task


@pytest.fixture
def image_factory(db):
    return make_generated_image
