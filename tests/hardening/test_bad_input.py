"""Every entry point refuses bad input with a clear error and changes nothing.

The callback view, the REST API, the admin's generate form, the settings and the download
guard each get what a careless (or hostile) sender could send: wrong JSON types, odd unicode,
NUL characters, oversize bodies, HTML, and URLs aimed at private addresses. Network rule: no
test opens a connection outside 127.0.0.0/8, not even when it fails; the download guards are
called directly, with injected resolvers, or with names that resolve to loopback.
"""

from __future__ import annotations

import io
import json
import math

import pytest
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import TestCase, override_settings
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape
from PIL import Image

from hidream_models import downloads
from hidream_models.conf import SETTINGS, hidream_settings
from hidream_models.downloads import check_download_url, download_image
from hidream_models.exceptions import HiDreamDownloadError
from hidream_models.models import (
    CallbackEvent,
    CallbackOutcome,
    GeneratedImage,
    ImageStatus,
    ModelImageTask,
    ReviewState,
    TaskStatus,
)
from hidream_models.url_policy import is_public_address, is_public_host
from tests import jobs
from tests.api.helpers import (
    PROMPT,
    TASKS,
    TEMPLATE,
    b64,
    make_generated_image,
    make_user,
    png_bytes,
    product_ref,
    task_url,
    token_client,
)
from tests.stub_server import StubServer

pytestmark = pytest.mark.django_db

SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'
HTML_PROMPT = f"{SCRIPT} {IMG}"
# Emoji (with a ZWJ sequence and a variation selector), RTL marks and Arabic, zero-width
# characters, and combining accents: all must be kept exactly as sent.
ODD = (
    "Dress 👗 \U0001f3f3\ufe0f\u200d\U0001f308 "
    "\u200fمرحبا\u200e \u202eevil\u202c zero\u200bwidth\u200cjoin\u2060 "
    "e\u0301 n\u0303 a\u0308\u0323"
)


@pytest.fixture(autouse=True)
def _fresh_throttle_cache():
    cache.clear()
    yield
    cache.clear()


# == the callback view ===========================================================================


@pytest.fixture
def task(db):
    return ModelImageTask.objects.create(
        mode="prompt",
        prompt="summer look",
        image_count=2,
        status=TaskStatus.SUBMITTED,
        remote_task_id="remote-1",
        sub_task_ids=["sub-a", "sub-b"],
    )


def callback_url(task, token=None) -> str:
    return reverse(
        "hidream_models:callback",
        kwargs={"task_id": task.pk, "token": token or task.callback_token},
    )


def envelope(*subs, task_id="remote-1"):
    return {
        "code": 0,
        "message": "Success",
        "request_id": "req-1",
        "result": {"task_id": task_id, "sub_task_results": list(subs)},
    }


def sub(sub_task_id="sub-a", **fields):
    item = {
        "sub_task_id": sub_task_id,
        "task_status": 1,
        "task_completion": 1,
        "image": "https://storage.hidreamai.com/r/x.jpg",
        "description": "",
    }
    item.update(fields)
    return item


def post_callback(client, task, data, **extra):
    """POST a callback, then apply what it stored, as the worker would."""
    if not isinstance(data, str | bytes):
        data = json.dumps(data)
    client.raise_request_exception = False  # a 500 is a failure to see, not an exception
    # The view enqueues on commit; these tests run inside a transaction that never commits.
    with TestCase.captureOnCommitCallbacks(execute=True):
        response = client.post(
            callback_url(task), data=data, content_type="application/json", **extra
        )
    jobs.apply_callbacks()
    return response


def snapshot(task) -> tuple:
    row = ModelImageTask.objects.get(pk=task.pk)
    images = list(GeneratedImage.objects.filter(task=task).values_list("sub_task_id", "status"))
    return (row.status, row.updated_at, row.last_callback_at, row.error_message, images)


def assert_refused(response, task, before, *, status=400, text=""):
    """A clear JSON error, the event kept as invalid, and nothing else changed."""
    assert response.status_code == status, response.content[:500]
    data = response.json()
    assert data["ok"] is False and data["error"], data
    assert text in data["error"], data["error"]
    assert snapshot(task) == before
    assert not GeneratedImage.objects.filter(task=task).exists()
    assert not jobs.pending_jobs()
    if status == 400:
        event = CallbackEvent.objects.get(task=task)
        assert event.outcome == CallbackOutcome.INVALID
        assert event.error == data["error"]
    return data["error"]


WRONG_SHAPES = {
    "sub_task_results-object": (
        {"task_id": "remote-1", "sub_task_results": sub()},
        "sub_task_results",
    ),
    "sub_task_results-string": (
        {"task_id": "remote-1", "sub_task_results": "sub-a done"},
        "sub_task_results",
    ),
    "sub_task_results-missing": ({"task_id": "remote-1"}, "sub_task_results"),
    "result-list": ({"code": 0, "message": "ok", "result": [sub()]}, "result"),
    "result-missing": ({"code": 0, "message": "ok"}, "result"),
    "code-string": ({"code": "0", "result": {"sub_task_results": [sub()]}}, "code"),
    "body-list": ([sub()], "JSON object"),
    "body-string": ('"done"', "JSON object"),
    "body-number": (42, "JSON object"),
    "body-null": (None, "JSON object"),
}

# A task result's shape with a wrong field: stored and answered 200 (HiDream resending the
# same body would not mend it), then marked invalid, naming the field, by the job.
WRONG_FIELDS = {
    "task_status-word": (envelope(sub(task_status="done")), "task_status"),
    "task_status-numeric-string": (envelope(sub(task_status="1")), "task_status"),
    "task_status-float": (envelope(sub(task_status=1.5)), "task_status"),
    "task_status-whole-float": (envelope(sub(task_status=1.0)), "task_status"),
    "task_status-true": (envelope(sub(task_status=True)), "task_status"),
    "task_status-null": (envelope(sub(task_status=None)), "task_status"),
    "task_status-list": (envelope(sub(task_status=[1])), "task_status"),
    "task_status-missing": (
        envelope({k: v for k, v in sub().items() if k != "task_status"}),
        "task_status",
    ),
    "sub_task_id-missing": (
        envelope({k: v for k, v in sub().items() if k != "sub_task_id"}),
        "sub_task_id",
    ),
    "sub_task_id-number": (envelope(sub(sub_task_id=123)), "sub_task_id"),
    "sub_task_id-null": (envelope(sub(sub_task_id=None)), "sub_task_id"),
    "sub_task_id-object": (envelope(sub(sub_task_id={"id": "sub-a"})), "sub_task_id"),
    "task_completion-word": (envelope(sub(task_completion="half")), "task_completion"),
    "image-list": (envelope(sub(image=["https://x.example/a.jpg"])), "image"),
    "description-object": (envelope(sub(task_status=3, description={"a": 1})), "description"),
    "item-not-object": (envelope("sub-a"), "sub_task_results"),
}


@pytest.mark.parametrize(("body", "field"), WRONG_SHAPES.values(), ids=WRONG_SHAPES.keys())
def test_callback_that_is_no_task_result_is_refused(client, task, body, field):
    before = snapshot(task)
    response = post_callback(client, task, body)
    error = assert_refused(response, task, before)
    assert field in error


@pytest.mark.parametrize(("body", "field"), WRONG_FIELDS.values(), ids=WRONG_FIELDS.keys())
def test_callback_with_wrong_json_types_is_kept_and_marked_invalid(client, task, body, field):
    before = snapshot(task)
    response = post_callback(client, task, body)
    assert response.status_code == 200, response.content[:500]
    event = CallbackEvent.objects.get(task=task)
    assert event.outcome == CallbackOutcome.INVALID, event.outcome
    assert field in event.error and "not a HiDream task result" in event.error, event.error
    assert event.body == (body if isinstance(body, str) else json.dumps(body))
    assert snapshot(task) == before
    assert not GeneratedImage.objects.filter(task=task).exists()
    assert not jobs.pending_jobs()


def test_callback_not_json_at_all(client, task):
    before = snapshot(task)
    error = assert_refused(post_callback(client, task, "{not json"), task, before)
    assert "not valid JSON" in error


def test_callback_empty_body(client, task):
    before = snapshot(task)
    error = assert_refused(post_callback(client, task, b""), task, before)
    assert "not valid JSON" in error


def test_callback_not_utf8(client, task):
    before = snapshot(task)
    raw = json.dumps(envelope(sub(task_status=3, description="é"))).encode("latin-1")
    raw = raw.replace(b"\\u00e9", "é".encode("latin-1"))
    response = post_callback(client, task, raw)
    assert_refused(response, task, before)
    assert "\ufffd" in CallbackEvent.objects.get(task=task).body


@pytest.mark.parametrize("ensure_ascii", [False, True], ids=["utf8", "escaped"])
def test_callback_with_odd_unicode_is_accepted_and_stored_intact(client, task, ensure_ascii):
    failed = sub("sub-b", task_status=3, image="", description=ODD, note=ODD)
    raw = json.dumps(envelope(sub("sub-a"), failed), ensure_ascii=ensure_ascii)
    response = post_callback(client, task, raw)
    assert response.status_code == 200, response.content
    image = GeneratedImage.objects.get(task=task, sub_task_id="sub-b")
    assert image.status == ImageStatus.FAILED
    assert ODD in image.failure_reason
    assert image.raw_result["description"] == ODD and image.raw_result["note"] == ODD
    event = CallbackEvent.objects.get(task=task)
    assert event.outcome == CallbackOutcome.APPLIED
    assert json.loads(event.body)["result"]["sub_task_results"][1]["description"] == ODD


def test_callback_with_odd_unicode_in_ids(client, task):
    """A sub-task id HiDream never gave (however odd) is ignored, never stored."""
    before = snapshot(task)
    response = post_callback(client, task, envelope(sub(f"sub-a{ODD[:20]}")))
    assert response.status_code == 200, response.content
    assert not GeneratedImage.objects.filter(task=task).exclude(sub_task_id="sub-a").exists()
    assert snapshot(task)[4] == before[4]


def test_callback_with_escaped_nul_in_strings_is_stored_with_replacement(client, task):
    failed = sub("sub-b", task_status=3, image="", description="bad\u0000pose", **{"k\u0000": 1})
    raw = json.dumps(envelope(sub("sub-a"), failed))
    assert "\\u0000" in raw and "\x00" not in raw
    response = post_callback(client, task, raw)
    assert response.status_code == 200, response.content
    image = GeneratedImage.objects.get(task=task, sub_task_id="sub-b")
    assert "bad\ufffdpose" in image.failure_reason and "\x00" not in image.failure_reason
    assert image.raw_result["description"] == "bad\ufffdpose"
    assert image.raw_result["k\ufffd"] == 1
    event = CallbackEvent.objects.get(task=task)
    assert event.outcome == CallbackOutcome.APPLIED and "\x00" not in event.body


@pytest.mark.parametrize(
    "raw",
    [
        b'{"task_id": "remote-1", "sub_task_results": [{"sub_task_id": "sub-a\x00", '
        b'"task_status": 1}]}',
        b'{"task_id": "remote-1",\x00 "sub_task_results": []}',
        b"\x00\x00\x00\x00",
    ],
    ids=["in-string", "between-tokens", "only-nul"],
)
def test_callback_with_raw_nul_bytes_is_refused_and_kept_with_replacement(client, task, raw):
    before = snapshot(task)
    error = assert_refused(post_callback(client, task, raw), task, before)
    assert "not valid JSON" in error
    event = CallbackEvent.objects.get(task=task)
    assert "\x00" not in event.body and "\ufffd" in event.body
    assert "\x00" not in event.error


@pytest.mark.parametrize("field", ["description", "note"], ids=["known-field", "extra-field"])
def test_callback_with_a_lone_surrogate_escape_is_no_500(client, task, field):
    """``"\\ud83d"`` is valid JSON syntax but no character: it cannot be encoded as UTF-8,
    so a database write of it fails. Unknown fields are kept in ``raw_result``, so the value
    reaches the database unless it is refused or replaced first. Never a 500."""
    raw = (
        '{"task_id": "remote-1", "sub_task_results": [{"sub_task_id": "sub-a", '
        f'"task_status": 3, "{field}": "broken \\ud83d emoji"}}]}}'
    )
    response = post_callback(client, task, raw)
    assert response.status_code in (200, 400), response.content[:500]
    event = CallbackEvent.objects.get(task=task)
    assert event.outcome != CallbackOutcome.ERROR, event.error


@pytest.mark.parametrize("field", ["task_completion", "score"], ids=["known", "extra"])
@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_callback_with_non_standard_json_numbers_is_no_500(client, task, constant, field):
    """Python's json accepts NaN/Infinity; JSON, PostgreSQL's jsonb and SQLite's JSON_VALID
    do not. An unknown field is kept in ``raw_result``, so it reaches the database."""
    raw = (
        '{"task_id": "remote-1", "sub_task_results": [{"sub_task_id": "sub-a", '
        f'"task_status": 2, "{field}": {constant}}}]}}'
    )
    response = post_callback(client, task, raw)
    assert response.status_code in (200, 400), response.content[:500]
    event = CallbackEvent.objects.get(task=task)
    assert event.outcome != CallbackOutcome.ERROR, event.error


def test_callback_with_a_task_status_out_of_the_database_range_is_no_500(client, task):
    response = post_callback(client, task, envelope(sub(task_status=10**20)))
    assert response.status_code in (200, 400), response.content[:500]
    event = CallbackEvent.objects.get(task=task)
    assert event.outcome != CallbackOutcome.ERROR, event.error


def test_callback_with_an_image_url_longer_than_the_column_is_no_500(client, task):
    """``GeneratedImage.remote_url`` holds 2000 characters (enforced by PostgreSQL)."""
    url = "https://storage.hidreamai.com/" + "a" * 2100 + ".jpg"
    response = post_callback(client, task, envelope(sub(image=url)))
    assert response.status_code in (200, 400), response.content[:500]
    event = CallbackEvent.objects.get(task=task)
    assert event.outcome != CallbackOutcome.ERROR, event.error


def test_callback_over_the_size_limit_with_content_length_is_413(client, task, settings):
    settings.HIDREAM_MAX_CALLBACK_BYTES = 2048
    before = snapshot(task)
    body = envelope(sub(task_status=3, description="x" * 3000))
    error = assert_refused(post_callback(client, task, body), task, before, status=413)
    assert "2048" in error
    assert not CallbackEvent.objects.exists()


def test_callback_declaring_a_huge_content_length_is_413_before_reading(client, task):
    before = snapshot(task)
    response = post_callback(client, task, b"{}", CONTENT_LENGTH=str(10**12))
    assert_refused(response, task, before, status=413)
    assert not CallbackEvent.objects.exists()


def test_callback_over_the_limit_without_content_length_is_never_applied(client, task, settings):
    """Without a Content-Length Django reads no body at all (WSGI), so an oversize body can
    neither be stored nor applied: a 400 for the empty body, never a 200."""
    settings.HIDREAM_MAX_CALLBACK_BYTES = 2048
    before = snapshot(task)
    body = json.dumps(envelope(sub(), sub("sub-b", description="x" * 5000)))
    response = post_callback(client, task, body, CONTENT_LENGTH="")
    assert response.status_code in (400, 413), response.content[:300]
    assert snapshot(task) == before
    assert not GeneratedImage.objects.exists()
    for event in CallbackEvent.objects.all():
        assert len(event.body) <= 2048


def test_callback_with_an_unparsable_content_length_is_400(client, task):
    before = snapshot(task)
    response = post_callback(client, task, envelope(sub()), CONTENT_LENGTH="12abc")
    assert response.status_code == 400
    assert "Content-Length" in response.json()["error"]
    assert snapshot(task) == before and not CallbackEvent.objects.exists()


# == the REST API ================================================================================


@pytest.fixture
def api(db):
    return token_client(make_user("boss", superuser=True))


@pytest.fixture
def product(make_product):
    return make_product()


def api_refuses(api, data, *, status=400, format="json"):
    api.raise_request_exception = False
    response = api.post(TASKS, data, format=format)
    assert response.status_code == status, response.content[:500]
    assert response["Content-Type"].startswith("application/json")
    assert ModelImageTask.objects.count() == 0
    assert not jobs.pending_jobs()
    sources = "hidream/sources"
    assert not default_storage.exists(sources) or not default_storage.listdir(sources)[1]
    return response.json()


def messages_of(errors, field) -> str:
    assert field in errors, errors
    return json.dumps(errors[field], ensure_ascii=False)


WRONG_API_TYPES = {
    "product-number": ({"product": 5, **PROMPT}, "product"),
    "product-true": ({"product": True, **PROMPT}, "product"),
    "product-list": ({"product": ["catalog.product:1"], **PROMPT}, "product"),
    "product-object": ({"product": {"pk": 1}, **PROMPT}, "product"),
    "image-number": ({"image": 12345, **PROMPT}, "image"),
    "image-true": ({"image": True, **PROMPT}, "image"),
    "image-list": ({"image": ["https://images.example.com/a.jpg"], **PROMPT}, "image"),
    "image-object": ({"image": {"url": "https://images.example.com/a.jpg"}, **PROMPT}, "image"),
    "image-null": ({"image": None, **PROMPT}, "image"),
    "mask-number": ({"mask": 7, **PROMPT}, "mask"),
    "mask-list": ({"mask": [], **PROMPT}, "mask"),
    "prompt-true": ({"prompt": True}, "prompt"),
    "prompt-list": ({"prompt": ["a", "b"]}, "prompt"),
    "prompt-object": ({"prompt": {"text": "a"}}, "prompt"),
    "prompt-null": ({"prompt": None}, "prompt"),
    "image_count-word": ({**PROMPT, "image_count": "x"}, "image_count"),
    "image_count-float": ({**PROMPT, "image_count": 2.5}, "image_count"),
    "image_count-true": ({**PROMPT, "image_count": True}, "image_count"),
    "image_count-list": ({**PROMPT, "image_count": [2]}, "image_count"),
    "image_count-object": ({**PROMPT, "image_count": {"n": 2}}, "image_count"),
    "image_count-null": ({**PROMPT, "image_count": None}, "image_count"),
    "template-string": ({"template": "h-001/s-001"}, "template"),
    "template-list": ({"template": ["h-001", "s-001"]}, "template"),
    "template-number": ({"template": 1}, "template"),
    "template-id-list": (
        {"template": {"human_template_id": ["h-001"], "scene_template_id": "s-001"}},
        "template",
    ),
    "template-id-object": (
        {"template": {"human_template_id": "h-001", "scene_template_id": {"id": 1}}},
        "template",
    ),
    "template-custom-word": (
        {"template": {**TEMPLATE["template"], "custom_human_template": "perhaps"}},
        "template",
    ),
    "preset-word": ({"preset": "summer", **PROMPT}, "preset"),
    "preset-true": ({"preset": True, **PROMPT}, "preset"),
    "preset-list": ({"preset": [1], **PROMPT}, "preset"),
    "preset-unknown": ({"preset": 999999, **PROMPT}, "preset"),
}


@pytest.mark.parametrize(("data", "field"), WRONG_API_TYPES.values(), ids=WRONG_API_TYPES.keys())
def test_api_create_with_wrong_types_is_a_400_naming_the_field(api, product, data, field):
    if "mask" in data or not ("image" in data or "product" in data):
        data = {"product": product_ref(product), **data}
    errors = api_refuses(api, data)
    assert messages_of(errors, field)


def test_api_create_with_a_body_that_is_not_an_object(api):
    for data in ([PROMPT], "prompt", 3, None):
        api.raise_request_exception = False
        response = api.generic("POST", TASKS, json.dumps(data), content_type="application/json")
        assert response.status_code == 400, (data, response.content[:300])
        assert ModelImageTask.objects.count() == 0


def test_api_body_over_the_limit_is_413(api, product, settings):
    from hidream_models.api.parsers import max_body_bytes

    settings.HIDREAM_MAX_UPLOAD_BYTES = 300
    limit = max_body_bytes()
    data = {"product": product_ref(product), "prompt": "p" * limit, "image": b64(png_bytes())}
    errors = api_refuses(api, data, status=413)
    assert str(limit) in errors["detail"] and "HIDREAM_MAX_UPLOAD_BYTES" in errors["detail"]


def test_api_multipart_field_over_djangos_limit_is_413(api, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    data = {"prompt": "p", "image": "A" * 4000}
    errors = api_refuses(api, data, status=413, format="multipart")
    assert "DATA_UPLOAD_MAX_MEMORY_SIZE" in errors["detail"]
    assert "HIDREAM_MAX_UPLOAD_BYTES" in errors["detail"]


def test_api_refuses_a_prompt_with_nul(api, product):
    errors = api_refuses(api, {"product": product_ref(product), "prompt": "a\x00b"})
    assert "Null characters are not allowed" in messages_of(errors, "prompt")


def test_api_refuses_nul_in_template_ids(api, product):
    template = {"human_template_id": "h-\x00", "scene_template_id": "s-001"}
    errors = api_refuses(api, {"product": product_ref(product), "template": template})
    assert "Null characters" in messages_of(errors, "template")


def test_api_refuses_nul_in_the_idempotency_key_or_stores_it_safely(api, product):
    api.raise_request_exception = False
    response = api.post(
        TASKS, {"product": product_ref(product), **PROMPT}, HTTP_IDEMPOTENCY_KEY="k\x00y"
    )
    assert response.status_code in (201, 400), response.content[:300]


def test_api_odd_unicode_prompt_round_trips(api, product):
    response = api.post(TASKS, {"product": product_ref(product), "prompt": ODD})
    assert response.status_code == 201, response.content
    assert response.json()["prompt"] == ODD
    task = ModelImageTask.objects.get()
    assert task.prompt == ODD
    again = api.get(task_url(task))
    assert again.json()["prompt"] == ODD
    assert task.sent_options()["prompt"] == ODD


def test_api_prompt_of_500_emoji_is_fine_and_501_is_not(api, product):
    ok = api.post(TASKS, {"product": product_ref(product), "prompt": "👗" * 500})
    assert ok.status_code == 201, ok.content[:300]
    ModelImageTask.objects.all().delete()
    jobs.clear_jobs()
    errors = api_refuses(api, {"product": product_ref(product), "prompt": "👗" * 501})
    assert "500" in messages_of(errors, "prompt")


PRIVATE_URLS = [
    "http://127.0.0.1/x.png",
    "http://127.0.0.1:8000/x.png",
    "http://10.0.0.5/x.png",
    "http://172.16.0.1/x.png",
    "http://192.168.1.1/x.png",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]/x.png",
    "http://[fe80::1]/x.png",
    "http://[::ffff:10.0.0.5]/x.png",
    "http://0.0.0.0/x.png",
    "http://100.64.0.1/x.png",
    "http://localhost/x.png",
    "http://LOCALHOST./x.png",
    "http://shop.localhost/x.png",
    "http://foo.local/x.png",
    "http://metadata.internal/x.png",
    "http://metadata.google.internal/computeMetadata/v1/",
]


@pytest.mark.parametrize("url", PRIVATE_URLS)
def test_api_refuses_image_urls_aimed_at_private_addresses(api, url):
    errors = api_refuses(api, {"image": url, **PROMPT})
    assert "private, loopback or link-local" in messages_of(errors, "image")


# Other spellings of loopback that inet_aton (so curl, browsers, most HTTP clients) accepts:
# HiDream fetching one of them reaches its own loopback interface.
NUMERIC_LOOPBACK = [
    "http://127.1/x.png",
    "http://2130706433/x.png",
    "http://0x7f000001/x.png",
    "http://017700000001/x.png",
    "http://0x7f.0.0.1/x.png",
    "http://0/x.png",
]


def test_api_refuses_loopback_written_as_a_short_or_numeric_address(api):
    accepted = []
    for url in NUMERIC_LOOPBACK:
        api.raise_request_exception = False
        response = api.post(TASKS, {"image": url, **PROMPT})
        if response.status_code != 400:
            accepted.append(url)
    assert accepted == [], f"loopback accepted as a public image URL: {accepted}"


NON_HTTP = {
    "ftp": "ftp://files.example.com/shirt.png",
    "file": "file:///etc/passwd",
    "gopher": "gopher://example.com:70/_x",
    "javascript": "javascript:alert(1)",
    "javascript-slashes": "javascript://example.com/%0aalert(1)",
    "data-no-base64": "data:image/png,rawpixels",
    "data-text": "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
    "scheme-relative": "//images.example.com/x.png",
}


@pytest.mark.parametrize("value", NON_HTTP.values(), ids=NON_HTTP.keys())
def test_api_refuses_non_http_schemes(api, value):
    errors = api_refuses(api, {"image": value, **PROMPT})
    assert messages_of(errors, "image")


@pytest.mark.parametrize("value", ["file:///etc/passwd", "http://10.0.0.5/m.png"])
def test_api_refuses_such_urls_as_mask_too(api, product, value):
    errors = api_refuses(api, {"product": product_ref(product), "mask": value, **PROMPT})
    assert messages_of(errors, "mask")


def test_api_accepts_a_public_image_url(api):
    response = api.post(TASKS, {"image": "https://images.example.com/dress.png", **PROMPT})
    assert response.status_code == 201, response.content
    assert ModelImageTask.objects.get().source_url == "https://images.example.com/dress.png"


# == HTML in prompts (and product names) on every page ===========================================


def _raw_html_absent(html: str, where: str) -> None:
    for raw in (SCRIPT, "<img src=x onerror", "<b>Evil</b>"):
        assert raw not in html, f"unescaped {raw!r} on {where}"


def _stored_picture(task, position=0):
    image = make_generated_image(task, position)
    assert image.status == ImageStatus.STORED and image.file
    return image


def test_html_in_prompt_is_stored_as_text_and_escaped_everywhere(
    api, client, make_product, settings
):
    settings.HIDREAM_PUBLISHER = "shop_demo.catalog.publishing.CatalogPublisher"
    product = make_product(name="<b>Evil</b> dress")
    response = api.post(TASKS, {"product": product_ref(product), "prompt": HTML_PROMPT})
    assert response.status_code == 201, response.content
    assert response.json()["prompt"] == HTML_PROMPT  # JSON: the raw string, as data
    task = ModelImageTask.objects.get()
    assert task.prompt == HTML_PROMPT and task.product_label == "<b>Evil</b> dress"
    ModelImageTask.objects.filter(pk=task.pk).update(
        status=TaskStatus.PARTIAL,
        error_message=f"HiDream says: {HTML_PROMPT}",
        finished_at=timezone.now(),
    )
    _stored_picture(task, 0)
    failed = make_generated_image(task, 1, status=ImageStatus.FAILED, with_file=False)
    GeneratedImage.objects.filter(pk=failed.pk).update(failure_reason=f"bad: {HTML_PROMPT}")
    CallbackEvent.objects.create(
        task=task, body=json.dumps({"description": HTML_PROMPT}), error=HTML_PROMPT
    )

    client.force_login(make_user("admin2", superuser=True))
    pages = {
        "task changelist": reverse("admin:hidream_models_modelimagetask_changelist"),
        "task change page": reverse("admin:hidream_models_modelimagetask_change", args=[task.pk]),
        "review queue": reverse("admin:hidream_models_review_queue"),
        "generated image list": reverse("admin:hidream_models_generatedimage_changelist"),
        "generated image page": reverse(
            "admin:hidream_models_generatedimage_change", args=[failed.pk]
        ),
        "callback event list": reverse("admin:hidream_models_callbackevent_changelist"),
        "product changelist": reverse("admin:catalog_product_changelist"),
        "product change page": reverse("admin:catalog_product_change", args=[product.pk]),
        "storefront list": reverse("catalog:products"),
        "storefront product": reverse("catalog:product", args=[product.pk]),
    }
    html = {}
    for where, url in pages.items():
        page = client.get(url)
        assert page.status_code == 200, (where, page.status_code)
        html[where] = page.content.decode()
        _raw_html_absent(html[where], where)
    # Where the prompt (or the error that quotes it) is shown, it is shown escaped.
    assert escape(HTML_PROMPT) in html["task change page"]
    assert escape("<b>Evil</b> dress") in html["review queue"]
    assert escape("<b>Evil</b> dress") in html["task changelist"]
    assert escape("<b>Evil</b> dress") in html["generated image list"]
    assert "HiDream model images" in html["product change page"]  # the tasks inline is there
    assert HTML_PROMPT not in html["storefront product"]
    assert escape(HTML_PROMPT) not in html["storefront product"]

    # The prompt in API JSON is the raw string, data only (never HTML).
    detail = api.get(task_url(task))
    assert detail["Content-Type"].startswith("application/json")
    assert detail.json()["prompt"] == HTML_PROMPT


def test_html_in_a_search_box_is_escaped(client):
    client.force_login(make_user("admin3", superuser=True))
    url = reverse("admin:hidream_models_modelimagetask_changelist")
    page = client.get(url, {"q": HTML_PROMPT})
    assert page.status_code == 200
    _raw_html_absent(page.content.decode(), "task search")


# == the admin generate form =====================================================================

CONFIRM_URL = "admin:catalog_product_hidream_generate"


@pytest.fixture
def admin_client(client, db):
    client.force_login(make_user("formboss", superuser=True))
    return client


def generate(admin_client, product, **fields):
    data = {
        "ids": [str(product.pk)],
        "confirm": "Generate",
        "mode": "prompt",
        "prompt": "a walk in the park",
        "image_count": "2",
        **fields,
    }
    return admin_client.post(reverse(CONFIRM_URL), data)


def form_refuses(response, field):
    assert response.status_code == 200, response.status_code
    assert ModelImageTask.objects.count() == 0
    assert not jobs.pending_jobs()
    errors = response.context["form"].errors
    assert field in errors, errors
    return " ".join(errors[field])


@pytest.mark.parametrize("count", ["x", "2.5", "", "1e3", "-1", "0", "5", "9" * 30])
def test_form_refuses_an_image_count_that_is_not_1_to_4(admin_client, product, count):
    text = form_refuses(generate(admin_client, product, image_count=count), "image_count")
    assert text


def test_form_refuses_an_unknown_mode(admin_client, product):
    text = form_refuses(generate(admin_client, product, mode="magic"), "mode")
    assert "magic" in text


def test_form_refuses_an_oversize_mask(admin_client, product, settings):
    settings.HIDREAM_MAX_UPLOAD_BYTES = 200
    mask = SimpleUploadedFile("mask.png", png_bytes(), "image/png")
    assert mask.size > 200
    text = form_refuses(generate(admin_client, product, mask=mask), "mask")
    assert "larger than" in text
    assert (
        not default_storage.exists("hidream/masks")
        or not default_storage.listdir("hidream/masks")[1]
    )


def test_form_refuses_a_mask_that_is_not_an_image(admin_client, product):
    mask = SimpleUploadedFile("mask.png", b"GIF89a but not really", "image/png")
    text = form_refuses(generate(admin_client, product, mask=mask), "mask")
    assert "not an image" in text


def test_form_refuses_a_mask_with_too_many_pixels(admin_client, product, settings):
    settings.HIDREAM_MAX_IMAGE_PIXELS = 100
    out = io.BytesIO()
    Image.new("L", (50, 50)).save(out, "PNG")
    mask = SimpleUploadedFile("mask.png", out.getvalue(), "image/png")
    text = form_refuses(generate(admin_client, product, mask=mask), "mask")
    assert "HIDREAM_MAX_IMAGE_PIXELS" in text


def test_form_refuses_a_prompt_with_nul(admin_client, product):
    text = form_refuses(generate(admin_client, product, prompt="a\x00b"), "prompt")
    assert "Null characters" in text


def test_form_rerenders_html_in_the_prompt_escaped(admin_client, product):
    response = generate(admin_client, product, prompt=HTML_PROMPT, image_count="x")
    form_refuses(response, "image_count")
    html = response.content.decode()
    _raw_html_absent(html, "the generate page")
    assert escape(HTML_PROMPT) in html  # kept in the textarea for the next try


def test_form_refuses_tampered_product_ids(admin_client, product):
    data = {"ids": ["1 OR 1=1", "<script>"], "mode": "prompt", "prompt": "p", "image_count": "2"}
    response = admin_client.post(reverse(CONFIRM_URL), data)
    assert response.status_code == 302
    assert ModelImageTask.objects.count() == 0


# == settings ====================================================================================

WRONG_SETTINGS = {
    "API_TOKEN": 12345,
    "BASE_URL": "hidreamai.com",
    "CALLBACK_BASE_URL": "ftp://shop.example.com",
    "SUBMIT_PATH": ["/api"],
    "RESULT_PATH": 7,
    "HUMAN_TEMPLATES_PATH": 1.5,
    "SCENE_TEMPLATES_PATH": b"/scene",
    "CONNECT_TIMEOUT": "5",
    "READ_TIMEOUT": 0,
    "MAX_ATTEMPTS": 0,
    "RETRY_BACKOFF": -1,
    "RETRY_BACKOFF_MAX": "300",
    "POLL_INTERVAL": 0.5,
    "CALLBACK_BATCH_WINDOW": -0.05,
    "CALLBACK_GRACE": -5,
    "TASK_DEADLINE": "1h",
    "MAX_DOWNLOAD_BYTES": 10.5,
    "MAX_IMAGE_PIXELS": True,
    "ALLOWED_RESULT_HOSTS": "hidreamai.com",
    "SOURCE_IMAGE_MODE": "file",
    "MAX_CALLBACK_BYTES": 10,
    "STORAGE_PREFIX": "/",
    "PRODUCT_MODELS": {"product": "image"},
    "PUBLISHER": "no.such.module.Publisher",
    "CREDITS_PER_IMAGE": "2",
    "MAX_CONCURRENT_REQUESTS": -1,
    "MAX_IMAGES_PER_MINUTE": "100",
    "RATE_WINDOW": 0,
    "IDEMPOTENCY_KEY_TTL": "a day",
    "MAX_UPLOAD_BYTES": 0,
    "RESEND_UNCONFIRMED": "yes",
    "API_CREATE_RATE": "lots",
    "THROTTLE_CACHE": "no-such-cache",
}


def test_the_wrong_values_table_covers_every_setting():
    assert set(WRONG_SETTINGS) == set(SETTINGS)


@pytest.mark.parametrize(("name", "value"), WRONG_SETTINGS.items(), ids=WRONG_SETTINGS.keys())
def test_wrong_setting_is_improperly_configured_naming_it(name, value):
    full = f"HIDREAM_{name}"
    with override_settings(**{full: value}):
        with pytest.raises(ImproperlyConfigured) as caught:
            getattr(hidream_settings, name)
        assert full in str(caught.value)
        if name == "API_TOKEN":
            assert "12345" not in str(caught.value)
        with pytest.raises(SystemCheckError) as failed:
            call_command("check", stdout=io.StringIO(), stderr=io.StringIO())
        text = str(failed.value)
        assert "hidream_models.E001" in text and full in text
    assert getattr(hidream_settings, name) is not None or SETTINGS[name].default is None


def test_numeric_settings_refuse_nan():
    """``float("nan") < minimum`` is False, so a NaN timeout, interval or deadline (e.g. from
    the environment: ``HIDREAM_READ_TIMEOUT=nan`` is read with ``env.float``) must be caught
    by a finiteness check, not slip past the minimum."""
    accepted = []
    for name, spec in SETTINGS.items():
        kinds = spec.kind if isinstance(spec.kind, tuple) else (spec.kind,)
        if float not in kinds:
            continue
        with override_settings(**{f"HIDREAM_{name}": math.nan}):
            try:
                getattr(hidream_settings, name)
            except ImproperlyConfigured as exc:
                assert f"HIDREAM_{name}" in str(exc)
            else:
                accepted.append(f"HIDREAM_{name}")
    assert accepted == [], f"NaN accepted for {', '.join(accepted)}"


def test_every_wrong_setting_is_reported_by_check_at_once():
    wrong = {"HIDREAM_MAX_ATTEMPTS": 0, "HIDREAM_SOURCE_IMAGE_MODE": "file"}
    with override_settings(**wrong), pytest.raises(SystemCheckError) as failed:
        call_command("check", stdout=io.StringIO(), stderr=io.StringIO())
    text = str(failed.value)
    assert text.count("hidream_models.E001") == 2
    assert all(name in text for name in wrong)


# == downloads ===================================================================================

JPEG = png_bytes()


def resolver_for(table: dict[str, list[str]]):
    """A resolver that answers from ``table`` and records what it was asked."""
    asked: list[str] = []

    def resolve(host, port):
        asked.append(host)
        if host not in table:
            raise AssertionError(f"unexpected DNS lookup of {host}")
        return table[host]

    resolve.asked = asked
    return resolve


def redirect_to(location):
    return (302, {"Location": location}, b"", 0)


def test_redirect_to_a_private_address_is_refused_before_connecting(settings, loopback_only):
    with StubServer([redirect_to("http://10.0.0.1/x.jpg")]) as stub:
        settings.HIDREAM_BASE_URL = stub.url
        settings.HIDREAM_ALLOWED_RESULT_HOSTS = ["10.0.0.1"]  # only the address guard is left
        resolver = resolver_for({"10.0.0.1": ["10.0.0.1"]})
        with pytest.raises(HiDreamDownloadError) as caught:
            download_image(f"{stub.url}/r/x.jpg", resolver=resolver)
    assert "non-public address" in str(caught.value) and "10.0.0.1" in str(caught.value)
    assert not caught.value.transient
    assert loopback_only.addresses == []
    assert len(stub.requests) == 1


def test_redirect_to_a_private_address_not_in_the_allowed_hosts_is_refused(
    settings, loopback_only
):
    with StubServer([redirect_to("http://10.0.0.1/x.jpg")]) as stub:
        settings.HIDREAM_BASE_URL = stub.url
        with pytest.raises(HiDreamDownloadError) as caught:
            download_image(f"{stub.url}/r/x.jpg", resolver=resolver_for({}))
    assert "HIDREAM_ALLOWED_RESULT_HOSTS" in str(caught.value)
    assert loopback_only.addresses == [] and len(stub.requests) == 1


@pytest.mark.parametrize(
    "location",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:80/x.jpg",
        "http://[fe80::1]/x.jpg",
        "http://[::ffff:10.0.0.1]/x.jpg",
    ],
)
def test_redirects_to_other_private_addresses_are_refused(settings, location, loopback_only):
    from urllib3.util import parse_url

    host = parse_url(location).host.strip("[]")
    with StubServer([redirect_to(location)]) as stub:
        settings.HIDREAM_BASE_URL = stub.url
        settings.HIDREAM_ALLOWED_RESULT_HOSTS = [host]
        with pytest.raises(HiDreamDownloadError) as caught:
            download_image(f"{stub.url}/r/x.jpg", resolver=resolver_for({host: [host]}))
    assert "non-public address" in str(caught.value)
    assert loopback_only.addresses == [] and len(stub.requests) == 1


def test_redirect_to_localhost_that_is_not_the_base_host_is_refused(settings):
    """The base URL names 127.0.0.1 (the simulator); "localhost" resolves to loopback too,
    but it is not the configured API host, so it gets the non-public check (real resolver)."""
    with StubServer([(200, {"Content-Type": "image/png"}, JPEG, 0)]) as target:
        port = target.url.rsplit(":", 1)[1]
        with StubServer([redirect_to(f"http://localhost:{port}/x.png")]) as stub:
            settings.HIDREAM_BASE_URL = stub.url
            settings.HIDREAM_ALLOWED_RESULT_HOSTS = ["localhost"]
            with pytest.raises(HiDreamDownloadError) as caught:
                download_image(f"{stub.url}/r/x.png")
        assert target.requests == []
    assert "non-public address" in str(caught.value) and "localhost" in str(caught.value)


def test_the_base_host_itself_is_allowed_on_loopback(settings):
    """The counterpart: a redirect within the configured API host is followed."""
    with StubServer(
        [redirect_to("/final.png"), (200, {"Content-Type": "image/png"}, JPEG, 0)]
    ) as stub:
        settings.HIDREAM_BASE_URL = stub.url
        downloaded = download_image(f"{stub.url}/r/x.png", resolver=resolver_for({}))
        with downloaded.file:
            assert downloaded.checked.format == "PNG"
    assert [request[1] for request in stub.requests] == ["/r/x.png", "/final.png"]


@pytest.mark.parametrize(
    "location",
    [
        "ftp://127.0.0.1/x.jpg",
        "file:///etc/passwd",
        "gopher://127.0.0.1:70/_x",
        "javascript:alert(1)",
        "data:image/png;base64,iVBORw0KGgo=",
    ],
)
def test_redirect_to_a_non_http_scheme_is_refused(settings, location):
    with StubServer([redirect_to(location)]) as stub:
        settings.HIDREAM_BASE_URL = stub.url
        with pytest.raises(HiDreamDownloadError) as caught:
            download_image(f"{stub.url}/r/x.jpg", resolver=resolver_for({}))
    assert "only http:// or https:// URLs" in str(caught.value)
    assert len(stub.requests) == 1


def test_redirect_loop_is_cut(settings):
    with StubServer([redirect_to("/again")]) as stub:
        settings.HIDREAM_BASE_URL = stub.url
        with pytest.raises(HiDreamDownloadError) as caught:
            download_image(f"{stub.url}/r/x.jpg", resolver=resolver_for({}))
    assert "Too many redirects" in str(caught.value)
    assert len(stub.requests) == downloads.MAX_REDIRECTS + 1


@pytest.mark.parametrize(
    "url",
    [
        "ftp://storage.hidreamai.com/x.jpg",
        "file:///etc/passwd",
        "gopher://storage.hidreamai.com/x",
        "javascript:alert(1)",
        "data:image/png;base64,iVBORw0KGgo=",
        "http:///x.jpg",
        "//storage.hidreamai.com/x.jpg",
        "storage.hidreamai.com/x.jpg",
    ],
)
def test_non_http_urls_are_refused_without_a_lookup(url):
    with pytest.raises(HiDreamDownloadError) as caught:
        check_download_url(url, resolver_for({}))
    assert "only http:// or https:// URLs" in str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example.com/x.jpg",
        "https://hidreamai.com.evil.example/x.jpg",
        "https://evilhidreamai.com/x.jpg",
        "https://hidreamai.co/x.jpg",
        "http://10.0.0.1/x.jpg",
        "http://localhost/x.jpg",
    ],
)
def test_hosts_not_allowed_are_refused_without_a_lookup(url, settings):
    settings.HIDREAM_BASE_URL = "https://hidreamai.com"
    with pytest.raises(HiDreamDownloadError) as caught:
        check_download_url(url, resolver_for({}))
    assert "HIDREAM_ALLOWED_RESULT_HOSTS" in str(caught.value)


def test_allowed_hosts_and_subdomains_pass_when_public(settings):
    settings.HIDREAM_BASE_URL = "https://hidreamai.com"
    resolver = resolver_for({"storage.hidreamai.com": ["93.184.216.34", "2606:2800:220:1::"]})
    check_download_url("https://storage.hidreamai.com/x.jpg", resolver)
    assert resolver.asked == ["storage.hidreamai.com"]


@pytest.mark.parametrize(
    "addresses",
    [
        ["93.184.216.34", "10.0.0.1"],
        ["127.0.0.1"],
        ["::1"],
        ["fe80::1%eth0"],
        ["::ffff:192.168.1.1"],
        ["169.254.169.254"],
        ["100.64.0.1"],
        ["0.0.0.0"],  # noqa: S104 (an address to refuse, not to bind)
        ["224.0.0.1"],
    ],
)
def test_an_allowed_host_resolving_to_a_non_public_address_is_refused(settings, addresses):
    settings.HIDREAM_BASE_URL = "https://hidreamai.com"
    resolver = resolver_for({"cdn.hidreamai.com": addresses})
    with pytest.raises(HiDreamDownloadError) as caught:
        check_download_url("https://cdn.hidreamai.com/x.jpg", resolver)
    assert "non-public address" in str(caught.value)


def test_a_failing_lookup_is_transient(settings):
    settings.HIDREAM_BASE_URL = "https://hidreamai.com"

    def broken(host, port):
        raise OSError("Temporary failure in name resolution")

    with pytest.raises(HiDreamDownloadError) as caught:
        check_download_url("https://cdn.hidreamai.com/x.jpg", broken)
    assert caught.value.transient and "cdn.hidreamai.com" in str(caught.value)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.255.255.254",
        "10.0.0.5",
        "172.16.0.1",
        "172.31.255.255",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",  # noqa: S104
        "255.255.255.255",
        "224.0.0.1",
        "::1",
        "::",
        "fe80::1",
        "fe80::1%eth0",
        "fc00::1",
        "fd12:3456::1",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "192.0.2.1",
        "198.18.0.1",
    ],
)
def test_is_public_address_refuses_private_and_special_addresses(address):
    assert is_public_address(address) is False


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"])
def test_is_public_address_accepts_public_addresses(address):
    assert is_public_address(address) is True


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "[::1]",
        "localhost",
        "LocalHost.",
        "api.localhost",
        "printer.local",
        "metadata.internal",
        "nas.lan",
        "router.home.arpa",
        "",
    ],
)
def test_is_public_host_refuses_local_names_and_addresses(host):
    assert is_public_host(host) is False


def test_a_redirect_never_carries_a_token_or_cookie(settings):
    with StubServer(
        [redirect_to("/final.png"), (200, {"Content-Type": "image/png"}, JPEG, 0)]
    ) as stub:
        settings.HIDREAM_BASE_URL = stub.url
        downloaded = download_image(f"{stub.url}/r/x.png", resolver=resolver_for({}))
        downloaded.file.close()
    for _method, _path, headers, _body in stub.requests:
        lowered = {key.lower() for key in headers}
        assert "authorization" not in lowered and "cookie" not in lowered


def test_a_result_url_that_redirects_to_a_private_address_fails_only_its_picture(
    settings, monkeypatch, loopback_only
):
    """End to end: the download job refuses the hop and records why; nothing is stored."""
    from hidream_models import services
    from hidream_models.payloads import parse_task_result
    from hidream_models.services import results

    resolver = resolver_for({"10.0.0.1": ["10.0.0.1"]})

    def guarded(url, **kwargs):
        return download_image(url, resolver=resolver)

    monkeypatch.setattr(results, "download_image", guarded)
    with StubServer([redirect_to("http://10.0.0.1/x.jpg")]) as stub:
        settings.HIDREAM_BASE_URL = stub.url
        settings.HIDREAM_ALLOWED_RESULT_HOSTS = ["10.0.0.1"]
        task = ModelImageTask.objects.create(
            mode="prompt",
            prompt="p",
            image_count=1,
            status=TaskStatus.SUBMITTED,
            remote_task_id="r",
            sub_task_ids=["s"],
        )
        payload = parse_task_result(
            {"sub_task_results": [{"sub_task_id": "s", "task_status": 1, "image": stub.url}]}
        )
        services.apply_result(task.pk, payload, source="poll")
        image = GeneratedImage.objects.get(task=task)
        assert image.status == ImageStatus.DOWNLOADING
        services.download_result(image.pk)  # the body of the download job
    image = GeneratedImage.objects.get(task=task)
    assert image.status == ImageStatus.FAILED and "non-public address" in image.failure_reason
    assert not image.file and image.review_state == ReviewState.UNREVIEWED
    task.refresh_from_db()
    assert task.status == TaskStatus.FAILED
    assert loopback_only.addresses == [] and len(stub.requests) == 1


def test_refused_upload_leaves_no_file(api):
    errors = api_refuses(api, {"image": b64(b"\x89PNG\r\n\x1a\nnot really"), **PROMPT})
    assert "image" in errors
    assert not default_storage.exists("hidream") or not any(default_storage.listdir("hidream")[1])
