"""The OpenAPI schema class of the API views: documents the error answers every operation can
give (400 with field-level messages, 401, 403, 404, 429), not only the successes."""

from __future__ import annotations

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse

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
