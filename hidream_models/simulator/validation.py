"""Request checks of the HiDream simulator, per the project's API-REFERENCE.md.

``validate_submission`` checks a submit body against §2 (cheap rules first, then the
image, which is base64-decoded or fetched from its http(s) URL and opened with Pillow)
and returns an ``Order``. ``page_params`` checks the template list's paging and
``preview_width`` a template preview's ``width``. A broken rule raises
``ParameterError``, whose message names the field and the rule; the simulator turns it
into HiDream's "invalid parameter" reply. Nothing here speaks HTTP or imports Django.
"""

import base64
import binascii
import json
import re
from urllib.parse import urlsplit

import requests
from PIL.Image import Image

from . import rendering
from .state import Order

MAX_SIDE = 4096  # "max resolution 4K", read as: longest side <= 4096 px
MAX_PROMPT = 500
MAX_IMAGE_COUNT = 4
MAX_PAGE_SIZE = 100
MAX_IMAGE_BYTES = 48 * 2**20
FETCH_TIMEOUT = 10
URL_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


class ParameterError(Exception):
    """A request broke a rule of API-REFERENCE.md; the message names field and rule."""


def _is_http_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def validate_submission(body: dict) -> Order:
    """Check `body` against §2 (cheap rules first, then the image) or raise ParameterError."""
    image = body.get("image")
    if image is None or image == "":
        raise ParameterError("image: required (an http(s) URL, or base64 without a data: prefix)")
    if not isinstance(image, str):
        raise ParameterError("image: must be a string (an http(s) URL or base64)")
    template, prompt = body.get("template"), body.get("prompt")
    if (template is None) == (prompt is None):
        raise ParameterError("template/prompt: exactly one of the two is required")
    human_id = scene_id = None
    if template is not None:
        if not isinstance(template, dict):
            raise ParameterError("template: must be an object")
        ids = []
        for key, known in (
            ("human_template_id", rendering.is_human_template),
            ("scene_template_id", rendering.is_scene_template),
        ):
            value = template.get(key)
            if value is None or value == "":
                raise ParameterError(f"template.{key}: required")
            if not isinstance(value, str):
                raise ParameterError(f"template.{key}: must be a string")
            if not known(value):
                raise ParameterError(f"template.{key}: {value[:64]!r} is not a known template")
            ids.append(value)
        human_id, scene_id = ids
        # Accepted either way; HiDream says True only does something "in later versions".
        if not isinstance(template.get("custom_human_template", False), bool):
            raise ParameterError("template.custom_human_template: must be a boolean")
    else:
        if not isinstance(prompt, str):
            raise ParameterError("prompt: must be a string")
        if not prompt.strip():
            raise ParameterError("prompt: must not be empty")
        if len(prompt) > MAX_PROMPT:
            raise ParameterError(f"prompt: at most {MAX_PROMPT} characters (got {len(prompt)})")
    count = body.get("image_count")
    count = 1 if count is None else count
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_IMAGE_COUNT:
        raise ParameterError(
            f"image_count: must be an integer from 1 to {MAX_IMAGE_COUNT} "
            f"(got {json.dumps(count)[:32]})"
        )
    notify_url = body.get("notify_url")
    if notify_url not in (None, "") and not (
        isinstance(notify_url, str) and _is_http_url(notify_url)
    ):
        raise ParameterError("notify_url: must be an http(s) URL")
    if body.get("mask") is not None and not isinstance(body["mask"], str):
        raise ParameterError("mask: must be a string (a URL or base64)")
    return Order(
        _load_image(image),
        human_id,
        scene_id,
        None if template is not None else prompt,
        count,
        notify_url or None,
    )


def _load_image(image: str) -> Image:
    if image.startswith("data:"):
        raise ParameterError("image: send base64 without the 'data:image/*;base64,' prefix")
    scheme = URL_SCHEME.match(image)
    if scheme:
        if scheme.group(1).lower() not in ("http", "https"):
            raise ParameterError("image: a URL must use http or https")
        data = _fetch(image)
    else:
        try:
            data = base64.b64decode("".join(image.split()), validate=True)
        except (binascii.Error, ValueError):
            raise ParameterError("image: neither an http(s) URL nor valid base64") from None
    try:
        return rendering.decode_product(data, MAX_SIDE)
    except ValueError as exc:
        raise ParameterError(f"image: {exc}") from None


def _fetch(url: str) -> bytes:
    try:
        with requests.get(url, timeout=FETCH_TIMEOUT, stream=True) as response:
            if response.status_code != 200:
                raise ParameterError(f"image: the URL answered HTTP {response.status_code}")
            chunks, size = [], 0
            for chunk in response.iter_content(65536):
                size += len(chunk)
                if size > MAX_IMAGE_BYTES:
                    raise ParameterError("image: the URL's content is too large")
                chunks.append(chunk)
    except requests.RequestException as exc:
        kind = type(exc).__name__
        raise ParameterError(f"image: the URL could not be fetched ({kind})") from None
    return b"".join(chunks)


def page_params(page_index: str, page_size: str) -> tuple[int, int]:
    """The template list's (page_index, page_size) as integers, or raise ParameterError."""
    try:
        index, size = int(page_index), int(page_size)
    except ValueError:
        raise ParameterError("page_index/page_size: must be integers") from None
    if index < 1:
        raise ParameterError("page_index: must be >= 1")
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise ParameterError(f"page_size: must be 1 to {MAX_PAGE_SIZE}")
    return index, size


def preview_width(width: str | None) -> int | None:
    """A template preview's `width` query parameter (None: full size) or ParameterError."""
    if width is None:
        return None
    # isascii(): str.isdigit() accepts "²", which int() then refuses.
    if not (width.isascii() and width.isdigit() and 1 <= int(width) <= MAX_SIDE):
        raise ParameterError(f"width must be 1 to {MAX_SIDE}")
    return int(width)
