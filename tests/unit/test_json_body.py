"""The submit's JSON body (``client.JSONBody``) and the base64 check (``rules``) for big photos.

The body must be, byte for byte, what ``requests``' ``json=`` sent before, and reach HiDream
(here the simulator, over real HTTP) whole, also when urllib3 sends it a second time after
a 429.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import random

import pytest
from PIL import Image

from hidream_models.client import INLINE_LIMIT, HiDreamClient, JSONBody
from hidream_models.exceptions import HiDreamHTTPError
from hidream_models.rules import _check_base64

TEMPLATE = {"human_template_id": "h-001", "scene_template_id": "s-001"}


def noisy_jpeg_base64(min_chars: int = INLINE_LIMIT + 1) -> str:
    """A real photo-like JPEG whose base64 is longer than ``min_chars``."""
    side = 300
    while True:
        out = io.BytesIO()
        Image.effect_noise((side, side), 60).convert("RGB").save(out, "JPEG", quality=95)
        value = base64.b64encode(out.getvalue()).decode("ascii")
        if len(value) > min_chars:
            return value
        side *= 2


def requests_json(body: dict) -> bytes:
    """What ``requests.post(json=body)`` sends."""
    return json.dumps(body, allow_nan=False).encode("utf-8")


@pytest.fixture(scope="module")
def photo() -> str:
    return noisy_jpeg_base64()


@pytest.mark.parametrize(
    "extra",
    [
        {"template": dict(TEMPLATE, custom_human_template=False)},
        {"prompt": '一条红色连衣裙, on a "beach"\n', "notify_url": "https://shop.example/cb/"},
        {"prompt": "x", "mask": "A" * (INLINE_LIMIT + 4)},
    ],
)
def test_body_is_what_json_equals_sent(photo, extra):
    body = {"image": photo, "image_count": 3, **extra}
    sent = JSONBody(body)
    expected = requests_json(body)
    assert len(sent) == len(expected)
    assert sent.read() == expected
    assert sent.read() == b"" and sent.tell() == len(expected)


def test_short_values_are_not_set_apart():
    body = {"image": "https://cdn.example.com/p.jpg", "image_count": 1, "prompt": "p"}
    assert JSONBody(body).read() == requests_json(body)


def test_a_prompt_that_looks_like_a_marker_is_sent_as_written(photo):
    body = {"image": photo, "prompt": "hidream-" + "0" * 32, "image_count": 1}
    assert JSONBody(body).read() == requests_json(body)


@pytest.mark.parametrize("size", [1, 7, 1000, 16384, INLINE_LIMIT + 3])
def test_body_read_in_pieces_and_again_after_a_rewind(photo, size):
    body = {"image": photo, "image_count": 2, "template": TEMPLATE}
    sent = JSONBody(body)
    pieces = []
    while piece := sent.read(size):
        assert len(piece) <= size
        pieces.append(piece)
    assert b"".join(pieces) == requests_json(body)
    assert sent.seek(0) == 0
    assert sent.read() == requests_json(body)
    sent.seek(10)
    assert sent.read(5) == requests_json(body)[10:15]
    assert sent.seek(-3, io.SEEK_END) == len(sent) - 3
    assert sent.read() == requests_json(body)[-3:]


def test_a_429_on_submit_is_not_sent_again_in_the_call_and_the_next_call_sends_the_same(
    settings, simulator, photo
):
    """A POST is never repeated inside one call (the job defers and claims it afresh); the
    next call sends the same fields from the same values."""
    received = []
    real_submit = simulator.submit

    def recording_submit(body):
        received.append(body)
        return real_submit(body)

    simulator.submit = recording_submit
    simulator.fail_next(1, 429, body="json", kind="submit", retry_after=0)
    fields = {
        "image": f"data:image/jpeg;base64,{photo}",
        "template": TEMPLATE,
        "image_count": 2,
        "notify_url": "https://shop.example.com/hidream/callback/x/y/",
    }
    with HiDreamClient(base_url=simulator.base_url, token=settings.HIDREAM_API_TOKEN) as client:
        with pytest.raises(HiDreamHTTPError) as throttled:
            client.submit_model_image(**fields)
        assert throttled.value.status == 429 and received == []  # refused before submit
        result = client.submit_model_image(**fields)
    assert len(result.sub_task_ids) == 2
    assert received == [
        {
            "image": photo,  # the data: prefix taken off by the rules, as before
            "image_count": 2,
            "template": dict(TEMPLATE, custom_human_template=False),
            "notify_url": "https://shop.example.com/hidream/callback/x/y/",
        }
    ]


# -- the base64 check ---------------------------------------------------------------------------


def b64decode_accepts(value: str) -> bool:
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def check_accepts(value: str) -> bool:
    try:
        _check_base64(value)
    except (binascii.Error, ValueError):
        return False
    return True


def long_base64(n_bytes: int) -> str:
    return base64.b64encode(random.Random(n_bytes).randbytes(n_bytes)).decode("ascii")


@pytest.mark.parametrize(
    "value",
    [
        long_base64(100_000),  # ends in "=="
        long_base64(100_001),  # ends in "="
        long_base64(100_002),  # no padding
        long_base64(100_002)[:-1],
        long_base64(100_002) + "=",
        long_base64(100_000)[:-2] + "A=",
        long_base64(100_002) + "AB==CD==",
        long_base64(100_002)[:5000] + "=" + long_base64(100_002)[5001:],
        long_base64(100_002)[:5000] + "*" + long_base64(100_002)[5001:],
        long_base64(100_002)[:5000] + "é" + long_base64(100_002)[5001:],
        long_base64(100_002) + "\n",
        long_base64(100_002)[:-10] + "!" + long_base64(100_002)[-9:],
    ],
)
def test_long_base64_check_agrees_with_b64decode(value):
    assert len(value) > 64 * 1024
    assert check_accepts(value) == b64decode_accepts(value)
