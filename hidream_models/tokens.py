"""Callback URL tokens: an HMAC of the task id, keyed with ``SECRET_KEY`` (DESIGN §5).

The token is the only key to a task's callback URL. Deriving it, rather than storing a random
one, lets the callback view check it without reading the database: a wrong token is refused
before any query, and a right one costs the view no read (it is the app's hottest URL). Like
Django's password-reset tokens, a token made with a key now in ``SECRET_KEY_FALLBACKS`` still
verifies, so a key can be rotated while tasks are in flight; once a key is dropped, the
callbacks of tasks submitted under it are refused (404) and polling fetches their results.
"""

from __future__ import annotations

from django.conf import settings
from django.utils.crypto import constant_time_compare, salted_hmac

# Namespaces the HMAC, so no other use of SECRET_KEY makes the same value.
KEY_SALT = "hidream_models.callback_token"


def _token(task_id, secret: str) -> str:
    # SHA-256: 64 hex characters, 256 bits; str(UUID) is its one canonical spelling.
    return salted_hmac(KEY_SALT, str(task_id), secret=secret, algorithm="sha256").hexdigest()


def callback_token(task_id) -> str:
    """The token of the callback URL of the task ``task_id``."""
    return _token(task_id, settings.SECRET_KEY)


def is_valid_callback_token(task_id, token: str) -> bool:
    """Whether ``token`` is the task's, under the current key or a fallback one.

    Compared in constant time against every key, so timing tells nothing about how much of
    it was right or which key made it.
    """
    token = str(token)
    valid = False
    for secret in [settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS]:
        valid |= constant_time_compare(_token(task_id, secret), token)
    return valid
