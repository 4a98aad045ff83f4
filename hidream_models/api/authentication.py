"""How the API's views authenticate: as the project says, or a sensible default.

A project that sets ``REST_FRAMEWORK["DEFAULT_AUTHENTICATION_CLASSES"]`` (a shop's JWT or
OAuth) keeps it for this API too. One that sets nothing would get DRF's defaults, session and
HTTP Basic, and a ``Token`` header would be ignored (403): the API then authenticates with
DRF's token (when ``rest_framework.authtoken`` is installed, first, so that an anonymous call
gets 401 with ``WWW-Authenticate: Token``) and the session.
"""

from __future__ import annotations

from django.apps import apps
from django.conf import settings
from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework.settings import api_settings


def authentication_classes() -> list[type]:
    """The authentication classes of the app's API views (read per request)."""
    if "DEFAULT_AUTHENTICATION_CLASSES" in getattr(settings, "REST_FRAMEWORK", {}):
        return list(api_settings.DEFAULT_AUTHENTICATION_CLASSES)
    classes: list[type] = [SessionAuthentication]
    if apps.is_installed("rest_framework.authtoken"):
        classes.insert(0, TokenAuthentication)
    return classes


class HiDreamAuthenticationMixin:
    """For the app's API views: ``authentication_classes()`` instead of DRF's defaults."""

    def get_authenticators(self):
        return [authentication() for authentication in authentication_classes()]
