"""The API's JSON parser: reads the body itself, with the app's guards and the app's limit.

DRF's ``JSONParser`` has two problems for this API. It lets a body nested 200,000 deep end in
a ``RecursionError`` (a 500 with an error mail) and hands NaN and ``1e999`` on; and DRF reads
a ``JSONParser``'s body through Django's ``request.body``, which refuses anything over
``DATA_UPLOAD_MAX_MEMORY_SIZE`` (2.5 MB by default), so a 2.3 MB photo sent as base64 got a
413 while the same file as multipart was fine up to 20 MB. This parser is not a
``JSONParser``: DRF hands it the request's stream, it reads at most ``max_body_bytes()``
(an image and a mask of ``HIDREAM_MAX_UPLOAD_BYTES`` each, base64-encoded, and the rest), and
parses with ``payloads.read_json``. Every failure is a 400, or a 413 naming the setting.
"""

from __future__ import annotations

from django.conf import settings
from django.utils.translation import gettext as _
from rest_framework import status
from rest_framework.exceptions import APIException, ParseError
from rest_framework.parsers import BaseParser
from rest_framework.renderers import JSONRenderer

from ..conf import hidream_settings
from ..payloads import read_json

#: Room for everything in a create request but its image and mask.
OTHER_FIELDS_BYTES = 1024 * 1024


class PayloadTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "payload_too_large"


def max_body_bytes() -> int:
    """The largest request body the API reads: an image and a mask of
    ``HIDREAM_MAX_UPLOAD_BYTES`` each, as base64 (4 bytes for 3), and the other fields."""
    base64_size = -(-hidream_settings.MAX_UPLOAD_BYTES // 3) * 4
    return 2 * base64_size + OTHER_FIELDS_BYTES


def too_large(size: int | None = None) -> PayloadTooLarge:
    limit = max_body_bytes()
    if size is None:
        text = _("The request body is over the limit of %(max)s bytes (HIDREAM_MAX_UPLOAD_BYTES).")
        return PayloadTooLarge(text % {"max": limit})
    text = _(
        "The request body is %(n)s bytes; the limit is %(max)s (set by HIDREAM_MAX_UPLOAD_BYTES)."
    )
    return PayloadTooLarge(text % {"n": size, "max": limit})


class HiDreamJSONParser(BaseParser):
    """``application/json`` read from the stream, by ``payloads.read_json``."""

    media_type = "application/json"
    renderer_class = JSONRenderer

    def parse(self, stream, media_type=None, parser_context=None):
        if stream is None:
            return {}
        limit = max_body_bytes()
        raw = stream.read(limit + 1)  # a body without Content-Length is capped here too
        if len(raw) > limit:
            raise too_large()
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            return read_json(raw.decode(encoding))
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
            raise ParseError(_("JSON parse error - %(error)s") % {"error": exc}) from None
