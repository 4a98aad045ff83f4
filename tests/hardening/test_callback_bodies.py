"""No callback body can break anything: not the callback URL, not the job that applies it,
not a page that shows it.

Whatever bytes reach a real task's callback URL with its valid token, the answer is one of
200, 400, 404, 405, 413 or 503, never a 500; the job that applies what was stored ends
every callback applied or marked invalid (never "error"); and the task's admin page, the
callback's own page and the callback list render for a superuser, with no NUL or lone
surrogate in what they show. Hypothesis generates the bodies (arbitrary bytes, JSON-ish text
with deep nesting, surrogate escapes, NUL and huge numbers, and task results of the right
shape with hostile values), derandomized so every run tries the same ones; explicit
regression tests pin the two bodies that used to break: JSON nested 60,000 deep (a
RecursionError, 500) and a lone surrogate (stored, then a 500 on the task's page for good).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from django.urls import reverse
from django.utils.html import escape
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from hidream_models.models import (
    CallbackEvent,
    CallbackOutcome,
    GeneratedImage,
    ModelImageTask,
    TaskStatus,
)
from hidream_models.payloads import MAX_JSON_DEPTH, JSONTooDeep, loads_json, printable, read_json
from tests import jobs

pytestmark = pytest.mark.django_db(transaction=True)

# Hypothesis keeps caches in ./.hypothesis unless told otherwise: keep them out of the repo.
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "hidream-callback-tests-hypothesis")

ANSWERS = {200, 400, 404, 405, 413, 503}
BOUNDED = settings(
    max_examples=40,
    deadline=None,
    database=None,  # nothing written to the repository
    derandomize=True,  # the same bodies on every run: no flaky failures
    # One task per example, made by the test; the fixtures only hold clients and settings.
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)


# -- what is sent, and what is checked after --------------------------------------------------


def new_task() -> ModelImageTask:
    """A submitted task, the only one: each example starts afresh (the one before, with its
    callbacks and pictures, is deleted)."""
    ModelImageTask.objects.all().delete()
    return ModelImageTask.objects.create(
        mode="prompt",
        prompt="summer look",
        image_count=2,
        status=TaskStatus.SUBMITTED,
        remote_task_id="remote-1",
        sub_task_ids=["sub-a", "sub-b"],
    )


def callback_url(task) -> str:
    return reverse(
        "hidream_models:callback", kwargs={"task_id": task.pk, "token": task.callback_token}
    )


@pytest.fixture
def sender(client, settings):
    """POSTs a body to a task's callback URL, then runs the job that applies it (only that
    job: the downloads it queues are dropped, so no test connects anywhere)."""
    settings.HIDREAM_CALLBACK_BATCH_WINDOW = 0  # one job per callback, due at once
    client.raise_request_exception = False  # a 500 is a failure to see, not an exception

    def send(task, raw: bytes, **extra):
        response = client.post(
            callback_url(task), data=raw, content_type="application/json", **extra
        )
        jobs.run_only("apply_received_callbacks")
        jobs.clear_jobs()
        return response

    return send


@pytest.fixture
def staff(admin_client):
    admin_client.raise_request_exception = False
    return admin_client


def assert_answered(response) -> None:
    assert response.status_code in ANSWERS, (response.status_code, response.content[:300])
    assert response["Content-Type"] == "application/json"
    data = json.loads(response.content)
    assert data["ok"] is (response.status_code == 200), data


def assert_pages_render(staff, task) -> dict[str, str]:
    """The task's page, each of its callbacks' pages and the callback list: 200, and text
    any browser (and UTF-8 encoder) takes. Returns them by name."""
    urls = {
        "task": reverse("admin:hidream_models_modelimagetask_change", args=[task.pk]),
        "callback list": reverse("admin:hidream_models_callbackevent_changelist"),
    }
    for event in CallbackEvent.objects.filter(task=task):
        urls[f"callback {event.pk}"] = reverse(
            "admin:hidream_models_callbackevent_change", args=[event.pk]
        )
    pages = {}
    for name, url in urls.items():
        response = staff.get(url)
        assert response.status_code == 200, (name, response.status_code)
        assert b"\x00" not in response.content, name
        pages[name] = response.content.decode("utf-8")  # strict: no surrogate got through
    return pages


def assert_applied_cleanly(task) -> None:
    """Every callback kept is applied, or marked invalid with a reason: none is left for
    the sweep, and none made the job fail ("error")."""
    for event in CallbackEvent.objects.filter(task=task):
        assert event.outcome in (
            CallbackOutcome.APPLIED,
            CallbackOutcome.UNCHANGED,
            CallbackOutcome.INVALID,
        ), (event.outcome, event.error, event.body[:300])
        assert "\x00" not in event.body and "\x00" not in event.error


def check(sender, staff, raw: bytes) -> None:
    task = new_task()
    assert_answered(sender(task, raw))
    assert_applied_cleanly(task)
    assert_pages_render(staff, task)


# -- generated bodies -------------------------------------------------------------------------

# Any character, lone surrogates and NUL included, and the odd ones that matter most often.
hostile_char = st.one_of(
    st.characters(),
    st.characters(categories=["Cs"]),
    st.sampled_from(["\x00", "\ufffd", "\ufeff", "\u202e", "\u2028", '"', "\\", "\n"]),
)
hostile_text = st.text(hostile_char, max_size=30)

# Literal pieces of JSON text, valid and not: glued together at random.
FRAGMENTS = [
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    '"',
    "\\",
    " ",
    '"sub_task_results"',
    '"task_id"',
    '"code"',
    '"result"',
    '"sub_task_id"',
    '"task_status"',
    "0",
    "-0",
    "1",
    "1e999",
    "-1e999",
    "1e-999",
    "1" + "0" * 400,
    "9" * 5000,  # over Python's limit for turning digits into an int
    "NaN",
    "Infinity",
    "-Infinity",
    "true",
    "null",
    '"\\ud800"',
    '"\\udfff\\ud800"',
    '"\\ud83d\\ude00"',
    '"\\u0000"',
    '"\\uZZZZ"',
    "\x00",
    "\ufeff",
    "[" * 70,
    '{"a":' * 70,
    "]" * 70,
]
json_ish_text = st.lists(st.one_of(st.sampled_from(FRAGMENTS), hostile_text), max_size=40).map(
    "".join
)

# Encodings json.loads also reads, and raw surrogates written as UTF-8 bytes.
ENCODINGS = ["utf-8", "utf-16", "utf-16-le", "utf-32"]


@st.composite
def encoded(draw, texts) -> bytes:
    text = draw(texts)
    return text.encode(draw(st.sampled_from(ENCODINGS)), "surrogatepass")


@st.composite
def deeply_nested(draw) -> bytes:
    opener, closer = draw(
        st.sampled_from(
            [("[", "]"), ('{"a":', "}"), ('[{"sub_task_results":', "}]"), ('{"a":[', "]}")]
        )
    )
    depth = draw(st.one_of(st.integers(0, 200), st.integers(200, 60_000)))
    middle = draw(st.sampled_from(["1", '"\\ud800"', "[]", ""]))
    closed = draw(st.booleans())
    return (opener * depth + middle + (closer * depth if closed else "")).encode()


# A JSON value with hostile leaves: lone surrogates, NUL, huge and non-finite numbers.
hostile_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**31 - 2, max_value=10**400),
    st.floats(),  # NaN and infinities included: dumped as NaN / Infinity
    hostile_text,
)
hostile_value = st.recursive(
    hostile_leaf,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(hostile_text, children),
    max_leaves=8,
)


@st.composite
def task_results(draw) -> bytes:
    """A body of one of the three accepted shapes whose fields hold anything at all."""
    items = []
    for _ in range(draw(st.integers(0, 3))):
        item = {
            "sub_task_id": draw(st.one_of(st.sampled_from(["sub-a", "sub-b"]), hostile_value)),
            "task_status": draw(st.one_of(st.sampled_from([0, 1, 2, 3, 4, 1004]), hostile_value)),
        }
        for name in ("task_completion", "image", "description", "extra"):
            if draw(st.booleans()):
                item[name] = draw(
                    st.one_of(st.just("http://127.0.0.1:9/x.jpg"), hostile_value)
                    if name == "image"
                    else hostile_value
                )
        items.append(item)
    result = {"task_id": draw(st.one_of(st.just("remote-1"), hostile_value))}
    result["sub_task_results"] = items
    body = draw(
        st.sampled_from(
            [
                {"code": 0, "message": "Success", "request_id": "req-1", "result": result},
                result,
                {"main_task_id": result["task_id"], "sub_task_results": items},
            ]
        )
    )
    if draw(st.booleans()):
        body[draw(hostile_text)] = draw(hostile_value)  # an unknown field, kept in raw
    # Lone surrogates as \ud800 escapes, or as raw bytes (0xED 0xA0 0x80) in UTF-8.
    if draw(st.booleans()):
        return json.dumps(body).encode("ascii")
    return json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogatepass")


@BOUNDED
@given(raw=st.binary(max_size=2000))
def test_any_bytes_at_all(sender, staff, raw):
    check(sender, staff, raw)


@BOUNDED
@given(raw=st.one_of(encoded(json_ish_text), deeply_nested()))
def test_json_ish_text_deep_nesting_surrogates_nul_and_huge_numbers(sender, staff, raw):
    check(sender, staff, raw)


@BOUNDED
@given(raw=task_results())
def test_task_results_of_the_right_shape_with_hostile_values(sender, staff, raw):
    check(sender, staff, raw)


# -- regressions -------------------------------------------------------------------------------

DEEP = 60_000


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * DEEP + b"]" * DEEP,
        b'{"a":' * DEEP + b"1" + b"}" * DEEP,
        b"[" * DEEP,  # never closed
        # A task result whose unknown field is the deep part.
        b'{"task_id": "remote-1", "sub_task_results": [{"sub_task_id": "sub-a", '
        b'"task_status": 1, "extra": ' + b"[" * DEEP + b"]" * DEEP + b"}]}",
    ],
    ids=["arrays", "objects", "unclosed", "inside-a-result"],
)
def test_a_body_nested_60000_deep_is_a_400_not_a_500(sender, staff, settings, raw):
    settings.HIDREAM_MAX_CALLBACK_BYTES = 1024 * 1024  # 60,000 objects take 360 kB
    task = new_task()
    response = sender(task, raw)
    assert response.status_code == 400, response.content[:300]
    assert f"nested more than {MAX_JSON_DEPTH} levels" in response.json()["error"]
    event = CallbackEvent.objects.get(task=task)
    assert event.outcome == CallbackOutcome.INVALID and "nested" in event.error
    pages = assert_pages_render(staff, task)
    # Shown as the text it is (too deep to pretty-print), on both pages.
    start = escape(raw[:30].decode())
    assert start in pages[f"callback {event.pk}"] and start in pages["task"]


SURROGATE_ESCAPE = (
    b'{"task_id": "remote-1", "sub_task_results": [{"sub_task_id": "sub-a", "task_status": 3, '
    b'"description": "broken \\ud800 emoji", "note\\udfff": "nul \\u0000 here"}]}'
)
SURROGATE_BYTES = (
    b'{"task_id": "remote-1", "sub_task_results": [{"sub_task_id": "sub-a", "task_status": 3, '
    b'"description": "broken \xed\xa0\x80 emoji", "note\xed\xbf\xbf": "x"}]}'
)


def test_a_lone_surrogate_escape_is_stored_applied_and_shown_escaped(sender, staff):
    """``"\\ud800"`` decodes to a lone surrogate: stored as sent (the text of the escape),
    applied with U+FFFD in its place, and shown on every page as the escape it was."""
    task = new_task()
    response = sender(task, SURROGATE_ESCAPE)
    assert response.status_code == 200, response.content
    event = CallbackEvent.objects.get(task=task)
    assert event.outcome == CallbackOutcome.APPLIED, event.error
    assert event.body == SURROGATE_ESCAPE.decode()
    image = GeneratedImage.objects.get(task=task, sub_task_id="sub-a")
    assert image.failure_reason.count("\ufffd") == 1 and "broken" in image.failure_reason
    pages = assert_pages_render(staff, task)
    for name in ("task", f"callback {event.pk}"):
        # The body, pretty-printed: the escapes are there to read, visibly.
        assert "broken \\ud800 emoji" in pages[name], name
        assert "note\\udfff" in pages[name] and "nul \\u0000 here" in pages[name], name


def test_lone_surrogate_bytes_are_refused_stored_as_u_fffd_and_every_page_renders(
    sender, staff
):
    """The same as raw UTF-8 bytes (0xED 0xA0 0x80), which json.loads lets through: not
    UTF-8, so a 400 HiDream hears about; the event is kept, its text with U+FFFD for them,
    and nothing breaks."""
    task = new_task()
    response = sender(task, SURROGATE_BYTES)
    assert response.status_code == 400, response.content
    event = CallbackEvent.objects.get(task=task)
    assert event.outcome == CallbackOutcome.INVALID, event.error
    assert "broken \ufffd\ufffd\ufffd emoji" in event.body
    pages = assert_pages_render(staff, task)
    assert "broken \ufffd\ufffd\ufffd emoji" in pages[f"callback {event.pk}"]


def test_a_stored_body_holding_a_lone_surrogate_or_nul_would_be_shown_escaped():
    """The view stores only text it could encode, but the pages do not count on it: a row
    written by another path (or an older version) holding NUL or a lone surrogate in its
    body, error or headers is shown with them escaped, in the inline and on its own page."""
    from django.contrib import admin

    from hidream_models.admin.tasks import CallbackEventAdmin, CallbackEventInline

    event = CallbackEvent(
        body='{"a": "\\ud800"} raw \ud800 and \x00 text',
        headers={"X-Odd": "\udfff\x00"},
        error="bad \ud800",
    )
    for display in (
        CallbackEventAdmin(CallbackEvent, admin.site),
        CallbackEventInline(ModelImageTask, admin.site),
    ):
        body = display.pretty_body(event)
        assert "raw \\ud800 and \\u0000 text" in body
        assert display.error_text(event) == "bad \\ud800"
        assert "\\udfff\\u0000" in display.headers_text(event)
        for shown in (body, display.error_text(event), display.headers_text(event)):
            shown.encode("utf-8")  # what a page can send
    # A body that is JSON is pretty-printed, its escapes spelled out again.
    event.body = '{"a": "\\ud800 \\u0000"}'
    shown = CallbackEventAdmin(CallbackEvent, admin.site).pretty_body(event)
    assert escape('{\n  "a": "\\ud800 \\u0000"\n}') in shown


# -- the parser itself ------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 1000, DEEP])
@pytest.mark.parametrize("as_bytes", [True, False], ids=["bytes", "text"])
def test_nesting_past_the_limit_is_a_value_error_never_a_recursion_error(depth, as_bytes):
    text = "[" * depth + "]" * depth
    with pytest.raises(JSONTooDeep) as caught:
        loads_json(text.encode() if as_bytes else text)
    assert isinstance(caught.value, ValueError)


def test_nesting_up_to_the_limit_is_read_and_brackets_in_strings_do_not_count():
    limit, deepest = MAX_JSON_DEPTH, []
    for _ in range(MAX_JSON_DEPTH - 1):
        deepest = [deepest]
    assert loads_json(("[" * limit + "]" * limit).encode()) == deepest
    brackets = '"' + "[{" * 500 + '\\"' + "]}" * 500 + '"'
    assert loads_json(f'{{"a": {brackets}, "b": [[1]]}}'.encode())["b"] == [[1]]
    # A string left open runs to the end: its brackets are text, the body is invalid JSON.
    with pytest.raises(ValueError) as caught:
        loads_json(b'{"a": "' + b"[" * 500)
    assert not isinstance(caught.value, JSONTooDeep)


def test_a_deep_reply_from_hidream_is_a_response_error(settings):
    """The same parser reads HiDream's replies: a reply nested 60,000 deep is a clear
    HiDreamResponseError, not a RecursionError in the worker."""
    from requests import Response

    from hidream_models.client import HiDreamClient
    from hidream_models.exceptions import HiDreamResponseError

    reply = Response()
    reply.status_code = 200
    reply._content = b"[" * DEEP + b"]" * DEEP
    reply.encoding = "utf-8"
    reply.headers["Content-Type"] = "application/json"
    with pytest.raises(HiDreamResponseError):
        HiDreamClient(base_url="http://127.0.0.1:9", token="t")._parse(reply)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain é 👗", "plain é 👗"),
        ("nul \x00 here", "nul \\u0000 here"),
        ("lone \ud800 and \udfff", "lone \\ud800 and \\udfff"),
    ],
)
def test_printable_spells_out_nul_and_lone_surrogates(text, shown):
    assert printable(text) == shown
    printable(text).encode("utf-8")  # always encodable


def test_read_json_keeps_what_came_for_display():
    assert read_json(b'{"a": "\\ud800"}') == {"a": "\ud800"}
    assert loads_json(b'{"a": "\\ud800"}') == {"a": "\ufffd"}


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-32"])
def test_a_task_result_not_in_utf8_is_refused_at_once_not_applied_later(client, encoding):
    """json.loads reads UTF-16 and UTF-32 too; the stored text is UTF-8. What is accepted is
    what the job can read, so such a body is a 400 HiDream hears about."""
    task = new_task()
    body = json.dumps({"sub_task_results": [{"sub_task_id": "sub-a", "task_status": 0}]}).encode(
        encoding
    )
    response = client.post(callback_url(task), body, content_type="application/json")
    assert response.status_code == 400, response.content
