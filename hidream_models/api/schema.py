"""The OpenAPI schema class of the API views: documents the error answers every operation can
give (400 with field-level messages, 401, 403, 404, 429), not only the successes.

``extend_schema`` here is drf-spectacular's, based on this class whatever the project's
``REST_FRAMEWORK["DEFAULT_SCHEMA_CLASS"]`` is: drf-spectacular's own bases a decorated method
on that setting, read at import, and DRF's default (its own ``AutoSchema``) then breaks the
schema view with a 500 in a project that configured no ``REST_FRAMEWORK``.
"""

from __future__ import annotations

import inspect

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse
from drf_spectacular.utils import extend_schema as spectacular_extend_schema

ERRORS = {
    "400": "Invalid input: a JSON object mapping each field (or non_field_errors) to "
    "messages that say what to fix.",
    "401": "Not authenticated: send a session cookie or 'Authorization: Token <key>'.",
    "403": "Authenticated, but without the permission this operation needs.",
    "404": "No such object (or page).",
    "429": "Too many creating requests (HIDREAM_API_CREATE_RATE); retry after the number of "
    "seconds in 'detail'.",
}


class HiDreamAutoSchema(AutoSchema):
    """drf-spectacular's AutoSchema plus the documented error responses."""

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        codes = ["401", "403"]
        is_detail = "{" in self.path
        if is_detail or self._is_list_view():
            codes.append("404")
        if self.method != "GET" or self._is_list_view():
            codes.append("400")
        if getattr(self.view, "action", None) in getattr(self.view, "throttled_actions", ()):
            codes.append("429")
        for code in codes:
            if code not in responses:
                responses[code] = self._get_response_for_code(
                    OpenApiResponse(response=OpenApiTypes.OBJECT, description=ERRORS[code]), code
                )
        return responses


def extend_schema(**kwargs):
    """drf-spectacular's ``extend_schema``, based on ``HiDreamAutoSchema``."""
    decorate = spectacular_extend_schema(**kwargs)

    def decorator(target):
        if callable(target) and not inspect.isclass(target):
            # Where drf-spectacular looks for the schema a method is based on first.
            target.kwargs = getattr(target, "kwargs", {})
            target.kwargs.setdefault("schema", HiDreamAutoSchema)
        return decorate(target)

    return decorator
