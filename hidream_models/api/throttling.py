"""A throttle for the endpoints that create work at HiDream (and cost money)."""

from __future__ import annotations

from django.core.cache import caches
from rest_framework.throttling import UserRateThrottle

from ..conf import hidream_settings


class HiDreamCreateThrottle(UserRateThrottle):
    """Per user, at ``HIDREAM_API_CREATE_RATE`` (e.g. "60/min"); empty disables it.

    The rate comes from the app's own setting, so a project need not add a scope to
    ``REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]``. Requests are counted in the cache
    ``HIDREAM_THROTTLE_CACHE`` names, which must be shared by every web process (the check
    ``hidream_models.W003`` warns when it is a per-process one).
    """

    scope = "hidream_create"

    def get_rate(self):
        return hidream_settings.API_CREATE_RATE or None

    def allow_request(self, request, view):
        # Read the rate per request, so setting changes (and tests) take effect at once.
        self.rate = self.get_rate()
        if self.rate is None:
            return True
        self.num_requests, self.duration = self.parse_rate(self.rate)
        self.cache = caches[hidream_settings.THROTTLE_CACHE]
        return super().allow_request(request, view)
