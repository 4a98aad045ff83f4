"""Callback URL tokens (``hidream_models.tokens``): an HMAC of the task id (DESIGN §5)."""

from __future__ import annotations

import uuid

import pytest

from hidream_models.tokens import callback_token, is_valid_callback_token

OLD_KEY = "the-key-before-rotation-" + "o" * 40
NEW_KEY = "the-key-after-rotation-" + "n" * 40


@pytest.fixture
def keys(settings):
    settings.SECRET_KEY = OLD_KEY
    settings.SECRET_KEY_FALLBACKS = []
    return settings


def test_a_token_is_256_bits_of_hex_stable_and_different_per_task(keys):
    task_id = uuid.uuid4()
    token = callback_token(task_id)
    assert len(token) == 64 and int(token, 16) >= 0
    assert callback_token(task_id) == token
    assert callback_token(str(task_id)) == token  # the UUID or its text: one spelling
    assert callback_token(uuid.uuid4()) != token


def test_a_token_verifies_for_its_task_only(keys):
    task_id, other = uuid.uuid4(), uuid.uuid4()
    token = callback_token(task_id)
    assert is_valid_callback_token(task_id, token)
    assert not is_valid_callback_token(other, token)
    assert not is_valid_callback_token(task_id, token.upper())
    assert not is_valid_callback_token(task_id, token[:-1])
    assert not is_valid_callback_token(task_id, "")


def test_the_token_depends_on_the_secret_key(keys):
    task_id = uuid.uuid4()
    before = callback_token(task_id)
    keys.SECRET_KEY = NEW_KEY
    assert callback_token(task_id) != before


def test_a_rotated_key_still_verifies_while_it_is_a_fallback(keys):
    task_id = uuid.uuid4()
    token = callback_token(task_id)
    keys.SECRET_KEY, keys.SECRET_KEY_FALLBACKS = NEW_KEY, [OLD_KEY]
    assert is_valid_callback_token(task_id, token)
    assert is_valid_callback_token(task_id, callback_token(task_id))  # new tasks: the new key
    keys.SECRET_KEY_FALLBACKS = []
    assert not is_valid_callback_token(task_id, token)

