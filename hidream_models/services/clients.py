"""Where the services get their ``HiDreamClient`` (one place to swap it in tests)."""

from __future__ import annotations

from ..client import HiDreamClient


def get_client() -> HiDreamClient:
    """A client configured from the ``HIDREAM_*`` settings."""
    return HiDreamClient()
