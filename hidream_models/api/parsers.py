"""The API's JSON parser: DRF's, reading with the app's guarded ``payloads.read_json``.

DRF's ``JSONParser`` lets a body nested 200,000 deep end in a ``RecursionError`` (a 500 with an
error mail), and hands NaN, ``1e999`` and lone surrogates on to code that cannot store them.
This one refuses the first two and too deep a nesting with a 400, as the callback URL does.
"""

from __future__ import annotations

from django.conf import settings
from django.utils.translation import gettext as _
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from ..payloads import read_json


class HiDreamJSONParser(JSONParser):
    """``application/json`` bodies read by ``payloads.read_json``; every failure is a 400."""

    def parse(self, stream, media_type=None, parser_context=None):
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            return read_json(stream.read().decode(encoding))
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
            raise ParseError(_("JSON parse error - %(error)s") % {"error": exc}) from None
