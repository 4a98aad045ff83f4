"""HiDream's task-result payloads: accepted shapes, validation, and the status code table.

The same parser serves the polling reply and the callback body (API-REFERENCE §3 and §5), so
both paths feed ``services.apply_result`` with one normalised ``TaskResultPayload``. Three
callback shapes are accepted: the whole envelope ``{code, message, request_id, result}``, the
bare ``result`` object, and the older ``{main_task_id, sub_task_results}``. Unknown fields
are kept in ``raw`` so nothing HiDream sends is lost.
"""

from __future__ import annotations

import json
import math
import re
import threading
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any

from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

from .exceptions import HiDreamAPIError

# task_status values per sub-task (API-REFERENCE §3).
STATUS_QUEUED = 0
STATUS_DONE = 1
STATUS_PROCESSING = 2
STATUS_FAILED = 3
STATUS_MODERATED = 4
NO_RESULT_STATUSES = frozenset({1004, 1005, 1006})
PENDING_STATUSES = frozenset({STATUS_QUEUED, STATUS_PROCESSING})

STATUS_DESCRIPTIONS = {
    STATUS_FAILED: _("HiDream could not generate this picture."),
    STATUS_MODERATED: _("HiDream's content moderation rejected this picture."),
    1004: _("The model produced no result: try another prompt or template."),
    1005: _("The model produced no result: try another prompt or template."),
    1006: _("The model produced no result: try another prompt or template."),
}


def is_final_status(code: int) -> bool:
    """Done, failed, moderated and no-result codes are final; unknown codes are not."""
    return code in (STATUS_DONE, STATUS_FAILED, STATUS_MODERATED) or code in NO_RESULT_STATUSES


def is_success_status(code: int) -> bool:
    return code == STATUS_DONE


class JSONIntegerField(serializers.IntegerField):
    """A JSON integer and nothing else: no "1", no 1.0, no true (HiDream sends numbers)."""

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class JSONStringField(serializers.CharField):
    """A JSON string and nothing else: a number is a different id, not this one."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


# The range a database integer column holds: a larger status would fail at the database.
INT32 = {"min_value": -(2**31), "max_value": 2**31 - 1}


class SubTaskResultSerializer(serializers.Serializer):
    """One item of ``sub_task_results``; extra fields are tolerated (and kept by the caller)."""

    sub_task_id = JSONStringField(max_length=128)
    task_status = JSONIntegerField(**INT32)
    task_completion = serializers.FloatField(required=False, default=0.0)
    image = serializers.CharField(
        required=False, allow_blank=True, allow_null=True, default="", max_length=2000
    )
    description = serializers.CharField(
        required=False, allow_blank=True, allow_null=True, default=""
    )


class TaskResultBodySerializer(serializers.Serializer):
    """The ``result`` object: an optional task id and the list of sub-task results."""

    task_id = JSONStringField(required=False, max_length=128)
    main_task_id = JSONStringField(required=False, max_length=128)
    sub_task_results = SubTaskResultSerializer(many=True, allow_empty=True)


_serializers = threading.local()


def _body_serializer() -> TaskResultBodySerializer:
    """This thread's ``TaskResultBodySerializer``, built once.

    Every callback is parsed twice (by the view, then by the job that applies it). A new
    serializer deep-copies its fields each time, which was half the cost of parsing; once
    bound, ``run_validation`` keeps no state between calls. One per thread all the same:
    DRF's list serializer sets attributes on its child while it validates.
    """
    serializer = getattr(_serializers, "task_result", None)
    if serializer is None:
        serializer = _serializers.task_result = TaskResultBodySerializer()
        serializer.fields  # noqa: B018 - bind the fields now, once
    return serializer


@dataclass(frozen=True)
class SubTaskResult:
    """One sub-task's state as HiDream reported it."""

    sub_task_id: str
    task_status: int
    task_completion: float
    image: str
    description: str
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def is_final(self) -> bool:
        return is_final_status(self.task_status)


@dataclass(frozen=True)
class TaskResultPayload:
    """A normalised task result: ``task_id`` may be empty when the sender omitted it."""

    task_id: str
    sub_task_results: tuple[SubTaskResult, ...]
    raw: dict[str, Any] = field(default_factory=dict, compare=False)


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def strip_nul(value: Any) -> Any:
    """The value with unstorable characters replaced, in every string it holds.

    PostgreSQL cannot store U+0000, nor the lone surrogates a JSON ``\\ud83d`` escape
    produces, in text or jsonb: a reply or callback carrying one would fail at the database
    instead of being kept. U+FFFD keeps the trace visible.
    """
    if isinstance(value, str):
        return _UNSTORABLE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {strip_nul(key): strip_nul(item) for key, item in value.items()}
    if isinstance(value, list):
        return [strip_nul(item) for item in value]
    return value


def printable(text: str) -> str:
    """``text`` with NUL and lone surrogates written as visible ``\\u`` escapes.

    What a page shows must encode as UTF-8 (a lone surrogate does not: the response fails
    with a 500) and should show what came, so such a character is spelled out as the JSON
    escape that carried it (``\\ud800``, ``\\u0000``) rather than dropped.
    """
    return _UNSTORABLE.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


# Bytes from which json.loads can only make storable strings lack all three: a \u escape
# (the one way valid UTF-8 JSON spells NUL or a lone surrogate), a NUL byte (UTF-16 and
# UTF-32 bodies, which json.loads also reads, are full of them) and 0xED (the lead byte of a
# surrogate encoded as UTF-8, which json.loads lets through).
_MAY_HOLD_UNSTORABLE = re.compile(rb"\\u|\x00|\xed")

# The deepest nesting of arrays and objects read. A task result is five levels deep; json
# recurses once per level, so a body nested 60,000 deep would end in a RecursionError (a
# 500), and one just under Python's limit would break whatever walks it next (strip_nul,
# the serializer, a JSONField). Refused before parsing, so such a body costs a scan.
MAX_JSON_DEPTH = 64

# A JSON string, escapes and all; one left open runs to the end. Possessive, so a body of
# quotes and backslashes is still scanned once, with no backtracking.
_JSON_STRING = re.compile(r'"(?:[^"\\]++|\\.)*+"?', re.DOTALL)
_NOT_A_BRACKET = re.compile(r"[^\[\]{}]++")
_DEPTH_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


class UnreadableJSON(ValueError):
    """JSON text whose values cannot be kept: NaN or Infinity, a number too large (or with
    too many digits), nesting too deep. With ``json.JSONDecodeError`` and
    ``UnicodeDecodeError``, every way ``read_json`` refuses a body."""


class JSONTooDeep(UnreadableJSON):
    """The JSON nests arrays and objects deeper than ``MAX_JSON_DEPTH``."""


def _too_deep(text: str) -> bool:
    if text.count("[") + text.count("{") <= MAX_JSON_DEPTH:
        return False  # the usual body: too few brackets to nest that deep, nothing to scan
    # Brackets inside strings are text: drop the strings, then follow the depth.
    brackets = _NOT_A_BRACKET.sub("", _JSON_STRING.sub("", text))
    return max(accumulate(map(_DEPTH_STEP.__getitem__, brackets)), default=0) > MAX_JSON_DEPTH


def _refuse_constant(name: str):
    raise UnreadableJSON(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    # 1e999 is valid JSON but becomes inf, which no jsonb column stores.
    value = float(text)
    if math.isinf(value):
        raise UnreadableJSON(f"{text} is too large for a number")
    return value


def read_json(raw: bytes | str) -> Any:
    """``json.loads`` for what a stranger sent: every failure is a ``ValueError``, and one of
    ``json.JSONDecodeError``, ``UnicodeDecodeError`` or ``UnreadableJSON``.

    Refuses NaN, Infinity, numbers too large for a float (no database stores them in jsonb)
    and nesting deeper than ``MAX_JSON_DEPTH`` (``JSONTooDeep``). Strings come back as
    decoded, lone surrogates and NUL included: ``loads_json`` is the one whose result can be
    stored.
    """
    if isinstance(raw, bytes | bytearray):
        # Exactly what json.loads does with bytes (UTF-8, -16 or -32); the text is needed
        # here to measure the nesting first. A UnicodeDecodeError is a ValueError.
        raw = raw.decode(json.detect_encoding(raw), "surrogatepass")
    too_deep = _too_deep(raw)
    if not too_deep:
        try:
            return json.loads(raw, parse_constant=_refuse_constant, parse_float=_finite_float)
        except RecursionError:
            # Only if the stack was nearly full already: the depth is checked above.
            pass
        except (json.JSONDecodeError, UnreadableJSON):
            raise
        except ValueError:
            # An integer past Python's limit on digits (sys.get_int_max_str_digits), the one
            # other ValueError json.loads raises; named, so a caller can tell a body's fault
            # from a bug. (A parse_int hook would say so too, but slows every number down.)
            raise UnreadableJSON(gettext("A number has more digits than can be read.")) from None
    raise JSONTooDeep(
        gettext("Arrays and objects are nested more than %(max)s levels deep.")
        % {"max": MAX_JSON_DEPTH}
    )


def loads_json(raw: bytes | str) -> Any:
    """``read_json`` keeping only what can be stored (``strip_nul``): the parser of HiDream's
    replies and callback bodies. Every failure is a ``ValueError``."""
    data = read_json(raw)
    if isinstance(raw, bytes | bytearray) and not _MAY_HOLD_UNSTORABLE.search(raw):
        # Nothing to walk: the usual callback body or reply (see _MAY_HOLD_UNSTORABLE).
        return data
    return strip_nul(data)


class PayloadError(ValueError):
    """The body is not one of the accepted task-result shapes; ``str()`` says why."""


def _unwrap(body: Any) -> dict:
    if not isinstance(body, dict):
        raise PayloadError(
            gettext("Expected a JSON object with 'sub_task_results', got %(type)s.")
            % {"type": type(body).__name__}
        )
    if "sub_task_results" not in body and ("result" in body or "code" in body):
        code = body.get("code", 0)
        if not isinstance(code, int) or isinstance(code, bool):
            raise PayloadError(gettext("'code' must be an integer."))
        if code != 0:
            raise HiDreamAPIError(
                code, str(body.get("message", "")), str(body.get("request_id", ""))
            )
        result = body.get("result")
        if not isinstance(result, dict):
            raise PayloadError(gettext("'result' must be an object with 'sub_task_results'."))
        return result
    return body


def _format_errors(errors: Any, prefix: str = "") -> str:
    if isinstance(errors, dict):
        parts = [_format_errors(value, f"{prefix}{key}.") for key, value in errors.items()]
        return "; ".join(part for part in parts if part)
    if isinstance(errors, list):
        if errors and all(isinstance(item, str) or hasattr(item, "code") for item in errors):
            return f"{prefix.rstrip('.')}: {' '.join(str(item) for item in errors)}"
        parts = [_format_errors(item, f"{prefix}{index}.") for index, item in enumerate(errors)]
        return "; ".join(part for part in parts if part)
    return f"{prefix.rstrip('.')}: {errors}"


def check_task_result_shape(body: Any) -> dict:
    """The cheap half of ``parse_task_result``: that ``body`` is a task result at all.

    Raises ``PayloadError`` for what is not (not an object, no ``sub_task_results`` list) and
    ``HiDreamAPIError`` for an error envelope; the fields themselves are the serializer's,
    checked by ``parse_task_result``.
    """
    result = _unwrap(body)
    if not isinstance(result.get("sub_task_results"), list):
        raise PayloadError(gettext("'sub_task_results' must be a list of sub-task results."))
    return result


def parse_task_result(body: Any) -> TaskResultPayload:
    """Validate and normalise a task-result body; raise ``PayloadError`` naming the problem.

    ``body`` must be as ``loads_json`` returns it: every string storable (unknown fields are
    kept in ``raw`` unchecked). A whole envelope with a non-zero ``code`` raises
    ``HiDreamAPIError`` instead.
    """
    result = _unwrap(body)
    try:
        data = _body_serializer().run_validation(result)
    except serializers.ValidationError as exc:
        raise PayloadError(_format_errors(exc.detail)) from None
    raw_items = result.get("sub_task_results") or []
    items = tuple(
        SubTaskResult(
            sub_task_id=item["sub_task_id"],
            task_status=item["task_status"],
            task_completion=max(0.0, min(1.0, item["task_completion"])),
            image=item.get("image") or "",
            description=item.get("description") or "",
            raw=dict(raw),
        )
        for item, raw in zip(data["sub_task_results"], raw_items, strict=True)
    )
    task_id = data.get("task_id") or data.get("main_task_id") or ""
    return TaskResultPayload(task_id=task_id, sub_task_results=items, raw=result)
