"""``Idempotency-Key`` for the API's create, bulk and retry: one request per key, as Stripe's.

A key is claimed before the work starts (a row under a ``(user, key)`` unique constraint, so
two requests racing with one key cannot both run) together with the request's fingerprint:
the method, the path and the canonical body, uploaded files by the SHA-256 of their bytes.

- same key, same request, finished: the first answer again, marked ``Idempotent-Replayed``;
- same key, another request: 422 naming the key (a client bug, never a second task);
- same key while the first request still runs: 409, to be tried again;
- an answer that is not a success releases the key (nothing was made: fix and send again).

Keys older than ``HIDREAM_IDEMPOTENCY_KEY_TTL`` are forgotten; ``hidream_purge`` deletes them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from drf_spectacular.utils import OpenApiParameter
from rest_framework import status
from rest_framework.exceptions import APIException, ValidationError

from ..conf import hidream_settings
from ..models import HiDreamIdempotencyKey

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"

IDEMPOTENCY_HEADER = OpenApiParameter(
    HEADER,
    str,
    OpenApiParameter.HEADER,
    description="Any unique string (≤ 255 printable characters). The same key with the same "
    "request gets the first answer again (marked Idempotent-Replayed); with another request "
    "it is refused (422); while the first still runs, 409. Keys are kept for "
    "HIDREAM_IDEMPOTENCY_KEY_TTL (24 hours by default).",
)


class KeyInUse(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "idempotency_key_in_use"


class KeyReused(APIException):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_code = "idempotency_key_reused"


@dataclass
class Claim:
    """A key claimed for this request (``row``), or the finished request to replay."""

    row: HiDreamIdempotencyKey | None = None
    replay: HiDreamIdempotencyKey | None = None


def _canonical(value: Any) -> Any:
    if hasattr(value, "read"):  # an uploaded file: its bytes' hash, not its name
        digest = hashlib.sha256()
        value.seek(0)
        for chunk in iter(lambda: value.read(64 * 1024), b""):
            digest.update(chunk)
        value.seek(0)
        return {"file_sha256": digest.hexdigest()}
    if hasattr(value, "getlist"):  # a QueryDict (multipart or form)
        return {key: [_canonical(item) for item in value.getlist(key)] for key in value}
    if isinstance(value, dict):
        return {str(key): _canonical(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(item) for item in value]
    return value


def fingerprint(request) -> str:
    """SHA-256 of the method, the path and the canonical body."""
    body = json.dumps(_canonical(request.data), sort_keys=True, default=str)
    text = f"{request.method}\n{request.path}\n{body}"
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def key_of(request) -> str:
    """The request's key ('' for none), or a 400 saying what a key may be."""
    key = request.headers.get(HEADER, "").strip()
    if len(key) > 255 or not key.isprintable():
        raise ValidationError({HEADER: [_("At most 255 printable characters.")]})
    return key


def claim(request, key: str) -> Claim:
    """Claim ``key`` for this request, or say what to answer instead (see the module doc)."""
    if not key:
        return Claim()
    user, mark = request.user, fingerprint(request)
    expired = timezone.now() - timedelta(seconds=hidream_settings.IDEMPOTENCY_KEY_TTL)
    HiDreamIdempotencyKey.objects.filter(user=user, key=key, created_at__lt=expired).delete()
    try:
        with transaction.atomic():
            return Claim(
                row=HiDreamIdempotencyKey.objects.create(user=user, key=key, fingerprint=mark)
            )
    except IntegrityError:
        existing = HiDreamIdempotencyKey.objects.filter(user=user, key=key).first()
    if existing is None:  # released by its request in between: this one may try again
        raise KeyInUse(_("The %(header)s “%(key)s” is in use; send again.") % _names(key))
    if existing.fingerprint != mark:
        raise KeyReused(
            _(
                "The %(header)s “%(key)s” was used for another request; use a new key for a "
                "new request."
            )
            % _names(key)
        )
    if existing.status_code is None:
        raise KeyInUse(
            _(
                "A request with the %(header)s “%(key)s” is still running; send again in a "
                "moment to get its answer."
            )
            % _names(key)
        )
    return Claim(replay=existing)


def _names(key: str) -> dict:
    return {"header": HEADER, "key": key}


def record(row: HiDreamIdempotencyKey | None, status_code: int, result: dict) -> None:
    """Keep the answer of a successful request under its key."""
    if row is not None:
        HiDreamIdempotencyKey.objects.filter(pk=row.pk).update(
            status_code=status_code, result=result
        )


def release(row: HiDreamIdempotencyKey | None) -> None:
    """Forget the key of a request that made nothing: the client may fix it and send again."""
    if row is not None:
        HiDreamIdempotencyKey.objects.filter(pk=row.pk).delete()
