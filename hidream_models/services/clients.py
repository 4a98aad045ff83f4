"""Where the services get their ``HiDreamClient`` (one place to swap it in tests)."""

from __future__ import annotations

from ..client import HiDreamClient
from .limits import held_request_slot


def get_client(*, holding_slot: bool = False) -> HiDreamClient:
    """A client configured from the ``HIDREAM_*`` settings.

    Each of its requests holds a concurrent-request slot, waiting up to
    ``limits.SLOT_WAIT_SECONDS`` for one, unless the caller already holds one (``holding_slot``: the
    submit, which defers instead of waiting, and writes its fence between slot and send).
    """
    if holding_slot:
        return HiDreamClient()
    return HiDreamClient(request_gate=held_request_slot)
