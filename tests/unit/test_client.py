"""``HiDreamClient`` against a fake transport mounted on its session (no network at all)."""

from __future__ import annotations

import base64
import io
import json
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from django.core.exceptions import ImproperlyConfigured
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict
from urllib3.exceptions import MaxRetryError, NewConnectionError

from hidream_models.client import HiDreamClient, SubmitResult
from hidream_models.exceptions import (
    HiDreamAPIError,
    HiDreamError,
    HiDreamHTTPError,
    HiDreamResponseError,
    HiDreamTimeoutError,
    HiDreamTransportError,
    HiDreamValidationError,
)
from hidream_models.payloads import TaskResultPayload
from tests.conftest import make_image_bytes

BASE = "http://hidream.test"
TEMPLATE = {"human_template_id": "human-1", "scene_template_id": "scene-9"}
TASK_ID = "97004e6a-5d2b-11ee-abe3-3a8d18c35963"
SUB_IDS = ["94ecd4e4-7d90-4daa-8edb-f3ee02fafa19", "0b6f1c1e-2222-4bbb-8ccc-123456789abc"]


class FakeTransport(BaseAdapter):
    """Answers from a queue of replies and records every request it was given.

    A reply is ``(status, body, headers)``, an exception instance to raise, or a callable
    taking the prepared request and returning one of those.
    """

    def __init__(self):
        super().__init__()
        self.replies: list = []
        self.requests: list[requests.PreparedRequest] = []

    def queue(self, *replies):
        self.replies.extend(replies)
        return self

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
        self.requests.append(request)
        assert self.replies, f"unexpected request {request.method} {request.url}"
        reply = self.replies.pop(0)
        if callable(reply):
            reply = reply(request)
        if isinstance(reply, BaseException):
            raise reply
        status, body, headers = reply
        if not isinstance(body, bytes):
            body = json.dumps(body).encode() if not isinstance(body, str) else body.encode()
            headers = {"Content-Type": "application/json", **headers}
        response = requests.Response()
        response.status_code = status
        response.headers = CaseInsensitiveDict(headers)
        response.raw = io.BytesIO(body)
        response.encoding = "utf-8"
        response.url = request.url
        response.request = request
        response.reason = "Fake"
        return response

    def close(self):
        pass


def ok(result, request_id="req-1", message="请求成功"):
    return (200, {"code": 0, "message": message, "request_id": request_id, "result": result}, {})


def submitted(task_id=TASK_ID, sub_ids=SUB_IDS):
    return ok({"task_id": task_id, "sub_task_ids": list(sub_ids)}, request_id="req-submit")


@pytest.fixture
def fake():
    return FakeTransport()


@pytest.fixture
def client(fake):
    client = HiDreamClient(base_url=BASE)
    client.session.mount("http://", fake)
    yield client
    client.close()


def body_of(request) -> dict:
    body = request.body
    if hasattr(body, "read"):  # the submit's body is a file (client.JSONBody), read it whole
        body.seek(0)
        body = body.read()
    return json.loads(body)


def query_of(request) -> dict[str, list[str]]:
    return parse_qs(urlsplit(request.url).query)


# -- submit ----------------------------------------------------------------------------------


def test_submit_sends_token_json_and_user_agent(settings, client, fake):
    fake.queue(submitted())
    client.submit_model_image(
        image="https://shop.example.com/media/dress.jpg",
        template=dict(TEMPLATE),
        image_count=2,
        notify_url="https://shop.example.com/hidream/callback/1/t/",
    )
    assert len(fake.requests) == 1
    sent = fake.requests[0]
    assert sent.method == "POST"
    assert sent.url == BASE + "/api-pub/ec/v3/image/model/async"
    assert sent.headers["Authorization"] == f"Bearer {settings.HIDREAM_API_TOKEN}"
    assert sent.headers["Content-Type"] == "application/json"
    assert sent.headers["User-Agent"].startswith("hidream-models/")
    assert body_of(sent) == {
        "image": "https://shop.example.com/media/dress.jpg",
        "template": {**TEMPLATE, "custom_human_template": False},
        "image_count": 2,
        "notify_url": "https://shop.example.com/hidream/callback/1/t/",
    }


def test_submit_path_comes_from_settings(settings, client, fake):
    settings.HIDREAM_SUBMIT_PATH = "/custom/submit"
    fake.queue(submitted())
    client.submit_model_image(image="https://x.example/a.jpg", prompt="p")
    assert fake.requests[0].url == BASE + "/custom/submit"


def test_submit_sends_cleaned_base64_and_prompt(client, fake):
    raw = make_image_bytes(size=(40, 60))
    encoded = base64.b64encode(raw).decode("ascii")
    fake.queue(submitted())
    client.submit_model_image(image="data:image/jpeg;base64," + encoded, prompt="on a beach")
    sent = body_of(fake.requests[0])
    assert sent == {"image": encoded, "prompt": "on a beach", "image_count": 1}
    assert base64.b64decode(sent["image"]) == raw


def test_explicit_token_is_used(fake):
    client = HiDreamClient(base_url=BASE, token="explicit-token-123")
    client.session.mount("http://", fake)
    fake.queue(submitted())
    client.submit_model_image(image="https://x.example/a.jpg", prompt="p")
    assert fake.requests[0].headers["Authorization"] == "Bearer explicit-token-123"


def test_submit_success_is_parsed(client, fake):
    fake.queue(submitted(task_id="task-77", sub_ids=["s1", "s2", "s3"]))
    result = client.submit_model_image(image="https://x.example/a.jpg", prompt="p", image_count=3)
    assert result == SubmitResult(
        task_id="task-77", sub_task_ids=("s1", "s2", "s3"), request_id="req-submit"
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"template": TEMPLATE, "prompt": "p"}, id="template-and-prompt"),
        pytest.param({}, id="neither"),
        pytest.param({"prompt": "p", "image_count": 5}, id="image-count-5"),
        pytest.param({"prompt": "p" * 501}, id="long-prompt"),
        pytest.param({"prompt": "p", "image": "ftp://x.example/a.jpg"}, id="ftp-image"),
        pytest.param({"prompt": "p", "notify_url": "/relative"}, id="relative-notify"),
        pytest.param({"template": {"human_template_id": "h"}}, id="half-template"),
    ],
)
def test_validation_happens_before_sending(client, fake, kwargs):
    kwargs = {"image": "https://x.example/a.jpg", **kwargs}
    with pytest.raises(HiDreamValidationError) as info:
        client.submit_model_image(**kwargs)
    assert info.value.errors
    assert fake.requests == []


@pytest.mark.parametrize(
    "result",
    [
        None,
        {"sub_task_ids": ["a"]},
        {"task_id": "", "sub_task_ids": ["a"]},
        {"task_id": 5, "sub_task_ids": ["a"]},
        {"task_id": "t", "sub_task_ids": "a"},
        {"task_id": "t", "sub_task_ids": [1]},
    ],
)
def test_submit_success_without_ids_is_a_response_error(client, fake, result):
    fake.queue(ok(result))
    with pytest.raises(HiDreamResponseError, match="task_id"):
        client.submit_model_image(image="https://x.example/a.jpg", prompt="p")


# -- reply checks ----------------------------------------------------------------------------


def test_business_error_code_raises_api_error(client, fake):
    fake.queue(
        (
            200,
            {
                "code": 1001,
                "message": "模板不存在 template missing",
                "request_id": "rid-555",
                "result": None,
            },
            {},
        )
    )
    with pytest.raises(HiDreamAPIError) as info:
        client.submit_model_image(image="https://x.example/a.jpg", template=TEMPLATE)
    exc = info.value
    assert (exc.code, exc.request_id) == (1001, "rid-555")
    text = str(exc)
    assert "1001" in text and "模板不存在 template missing" in text and "rid-555" in text
    assert not exc.transient


@pytest.mark.parametrize(
    ("status", "transient"),
    [(401, False), (403, False), (404, False), (500, True), (502, True), (429, True)],
)
def test_http_errors(client, fake, status, transient):
    fake.queue((status, f"error page {status}", {"Content-Type": "text/plain"}))
    with pytest.raises(HiDreamHTTPError) as info:
        client.get_model_image_result(TASK_ID)
    exc = info.value
    assert exc.status == status
    assert exc.transient is transient
    assert str(status) in str(exc)
    assert f"error page {status}" in str(exc)
    assert exc.retry_after is None


def test_http_401_says_to_check_the_token(client, fake):
    fake.queue((401, {"code": 401, "message": "unauthorized"}, {}))
    with pytest.raises(HiDreamHTTPError, match="HIDREAM_API_TOKEN"):
        client.submit_model_image(image="https://x.example/a.jpg", prompt="p")


@pytest.mark.parametrize(
    ("header", "expected"),
    [("7", 7.0), ("0.5", 0.5), ("-3", 0.0), ("Wed, 21 Oct 2015 07:28:00 GMT", None)],
)
def test_http_429_retry_after_is_parsed(client, fake, header, expected):
    fake.queue((429, "slow down", {"Retry-After": header}))
    with pytest.raises(HiDreamHTTPError) as info:
        client.submit_model_image(image="https://x.example/a.jpg", prompt="p")
    assert info.value.transient
    assert info.value.retry_after == expected
    assert len(fake.requests) == 1  # our transport: no hidden resend of the POST


def test_http_error_excerpt_is_short(client, fake):
    fake.queue((500, "x" * 5000, {}))
    with pytest.raises(HiDreamHTTPError) as info:
        client.get_model_image_result(TASK_ID)
    assert len(str(info.value)) < 1000


@pytest.mark.parametrize(
    ("body", "ctype"),
    [
        (b"<html><body>Bad gateway</body></html>", "text/html"),
        (b"", "application/json"),
        (b"{'code': 0}", "application/json"),
    ],
)
def test_non_json_is_a_response_error(client, fake, body, ctype):
    fake.queue((200, body, {"Content-Type": ctype}))
    with pytest.raises(HiDreamResponseError) as info:
        client.get_model_image_result(TASK_ID)
    assert "not JSON" in str(info.value)
    assert info.value.transient


@pytest.mark.parametrize(
    "body", [{"message": "ok", "result": {}}, [1, 2, 3], "just a string", None]
)
def test_envelope_without_code_is_a_response_error(client, fake, body):
    fake.queue((200, json.dumps(body).encode(), {"Content-Type": "application/json"}))
    with pytest.raises(HiDreamResponseError, match="envelope"):
        client.get_model_image_result(TASK_ID)


@pytest.mark.parametrize("code", ["0", True, 0.0, None])
def test_non_integer_code_is_a_response_error(client, fake, code):
    fake.queue((200, {"code": code, "message": "", "result": {}}, {}))
    with pytest.raises(HiDreamResponseError, match="code"):
        client.get_model_image_result(TASK_ID)


# -- transport failures ----------------------------------------------------------------------


def test_connect_timeout_means_not_sent(client, fake):
    fake.queue(requests.ConnectTimeout("connect timed out"))
    with pytest.raises(HiDreamTimeoutError) as info:
        client.submit_model_image(image="https://x.example/a.jpg", prompt="p")
    assert info.value.request_sent is False
    assert info.value.transient


def test_read_timeout_means_maybe_sent(client, fake):
    fake.queue(requests.ReadTimeout("read timed out"))
    with pytest.raises(HiDreamTimeoutError) as info:
        client.submit_model_image(image="https://x.example/a.jpg", prompt="p")
    assert info.value.request_sent is True


def test_connection_error_on_get_is_a_transport_error(client, fake):
    fake.queue(requests.ConnectionError("Connection reset by peer"))
    with pytest.raises(HiDreamTransportError) as info:
        client.get_model_image_result(TASK_ID)
    assert not isinstance(info.value, HiDreamTimeoutError)
    assert "hidream.test" in str(info.value)


def test_connection_broken_during_post_may_have_been_sent(client, fake):
    fake.queue(requests.ConnectionError("Connection aborted: RemoteDisconnected"))
    with pytest.raises(HiDreamTimeoutError) as info:
        client.submit_model_image(image="https://x.example/a.jpg", prompt="p")
    assert info.value.request_sent is True


def test_connection_refused_during_post_was_not_sent(client, fake):
    refused = NewConnectionError(None, "Failed to establish a new connection: refused")
    fake.queue(requests.ConnectionError(MaxRetryError(None, BASE, reason=refused)))
    with pytest.raises(HiDreamTransportError) as info:
        client.submit_model_image(image="https://x.example/a.jpg", prompt="p")
    assert not isinstance(info.value, HiDreamTimeoutError)


# -- results and templates -------------------------------------------------------------------


def test_get_model_image_result_parses(client, fake, settings):
    fake.queue(
        ok(
            {
                "task_id": TASK_ID,
                "sub_task_results": [
                    {
                        "sub_task_id": SUB_IDS[0],
                        "task_status": 1,
                        "task_completion": 1,
                        "image": "https://hidreamai.com/r/1.jpg",
                        "description": "",
                        "seed": 5,
                    },
                    {"sub_task_id": SUB_IDS[1], "task_status": 2, "task_completion": 0.25},
                ],
            }
        )
    )
    payload = client.get_model_image_result(TASK_ID)
    sent = fake.requests[0]
    assert sent.method == "GET"
    assert urlsplit(sent.url).path == "/api-pub/ec/v3/image/model/async/results"
    assert query_of(sent) == {"task_id": [TASK_ID]}
    assert sent.headers["Authorization"] == f"Bearer {settings.HIDREAM_API_TOKEN}"
    assert isinstance(payload, TaskResultPayload)
    assert payload.task_id == TASK_ID
    done, running = payload.sub_task_results
    assert (done.task_status, done.raw["seed"]) == (1, 5)
    assert done.image == "https://hidreamai.com/r/1.jpg"
    assert (running.task_status, running.task_completion) == (2, 0.25)


def test_get_model_image_result_fills_in_a_missing_task_id(client, fake):
    fake.queue(ok({"sub_task_results": [{"sub_task_id": "s", "task_status": 0}]}))
    assert client.get_model_image_result("asked-for-id").task_id == "asked-for-id"


def test_get_model_image_result_with_bad_payload_is_a_response_error(client, fake):
    fake.queue(
        ok({"task_id": TASK_ID, "sub_task_results": [{"sub_task_id": "s", "task_status": "done"}]})
    )
    with pytest.raises(HiDreamResponseError, match="task_status"):
        client.get_model_image_result(TASK_ID)


def test_get_model_image_result_business_error(client, fake):
    fake.queue((200, {"code": 2003, "message": "task not found", "request_id": "r"}, {}))
    with pytest.raises(HiDreamAPIError) as info:
        client.get_model_image_result(TASK_ID)
    assert info.value.code == 2003


def template_page(page, total_page, per_page=2):
    items = [
        {
            "id": f"t-{page}-{i}",
            "name_en": f"Model {page}.{i}",
            "gender": "Woman",
            "show_image": f"https://hidreamai.com/t/{page}-{i}.jpg",
            "new_field": i,
        }
        for i in range(per_page)
    ]
    return ok({"templates": items, "total_count": total_page * per_page, "total_page": total_page})


def test_list_templates_gathers_all_pages(client, fake):
    fake.queue(template_page(1, 3), template_page(2, 3), template_page(3, 3))
    templates = client.list_templates("human")
    assert [t["id"] for t in templates] == ["t-1-0", "t-1-1", "t-2-0", "t-2-1", "t-3-0", "t-3-1"]
    assert templates[0]["new_field"] == 0  # unknown fields kept
    assert len(fake.requests) == 3
    for number, sent in enumerate(fake.requests, start=1):
        assert sent.method == "GET"
        assert urlsplit(sent.url).path == "/api-pub/ec/v3/template/model/human"
        query = query_of(sent)
        assert query["page_index"] == [str(number)]
        assert int(query["page_size"][0]) <= 100


def test_list_scene_templates_uses_the_scene_path(client, fake):
    fake.queue(template_page(1, 1))
    assert len(client.list_templates("scene")) == 2
    assert urlsplit(fake.requests[0].url).path == "/api-pub/ec/v3/template/model/scene"


def test_list_templates_stops_on_an_empty_page(client, fake):
    fake.queue(template_page(1, 50), ok({"templates": [], "total_page": 50}))
    assert len(client.list_templates("human")) == 2
    assert len(fake.requests) == 2


def test_list_templates_refuses_unknown_kind_without_a_request(client, fake):
    with pytest.raises(ValueError, match="human"):
        client.list_templates("robot")
    assert fake.requests == []


def test_list_templates_without_templates_list_is_a_response_error(client, fake):
    fake.queue(ok({"items": []}))
    with pytest.raises(HiDreamResponseError, match="templates"):
        client.list_templates("human")


# -- the token stays secret ------------------------------------------------------------------


def echo_replies(token):
    """Server replies that echo the token somewhere, for each way a reply can fail."""
    return {
        "http-401": ("get", (401, f"invalid token {token}", {})),
        "http-500-json": ("get", (500, {"error": f"Bearer {token} rejected"}, {})),
        "non-json": (
            "get",
            (
                200,
                f"<html>Authorization: Bearer {token}</html>".encode(),
                {"Content-Type": "text/html"},
            ),
        ),
        "no-code": ("get", (200, {"message": f"who is {token}?"}, {})),
        "non-integer-code": ("get", (200, {"code": f"Bearer {token}", "result": {}}, {})),
        "business-message": (
            "get",
            (200, {"code": 7, "message": f"token {token} expired", "request_id": "r1"}, {}),
        ),
        "business-request-id": (
            "get",
            (200, {"code": 7, "message": "expired", "request_id": token}, {}),
        ),
        "submit-without-task-id": ("post", ok({"echo": f"Bearer {token}"})),
        "templates-without-list": ("templates", ok({"echo": token})),
        "bad-task-result": (
            "get",
            ok({"sub_task_results": [{"sub_task_id": token, "task_status": "x"}]}),
        ),
    }


def call(client, kind):
    if kind == "post":
        client.submit_model_image(image="https://x.example/a.jpg", prompt="p")
    elif kind == "templates":
        client.list_templates("human")
    else:
        client.get_model_image_result(TASK_ID)


def assert_token_hidden(exc, token):
    texts = [str(exc), repr(exc), *(str(arg) for arg in exc.args)]
    for text in texts:
        assert token not in text, f"token leaked in {type(exc).__name__}: {text}"


@pytest.mark.parametrize("case", list(echo_replies("T")))
def test_token_from_settings_never_appears_in_exceptions(settings, client, fake, case):
    token = settings.HIDREAM_API_TOKEN
    kind, reply = echo_replies(token)[case]
    fake.queue(reply)
    with pytest.raises(HiDreamError) as info:
        call(client, kind)
    assert_token_hidden(info.value, token)


@pytest.mark.parametrize("case", list(echo_replies("T")))
def test_explicit_token_never_appears_in_exceptions(fake, case):
    token = "explicit-Zq8-token-value"
    client = HiDreamClient(base_url=BASE, token=token)
    client.session.mount("http://", fake)
    kind, reply = echo_replies(token)[case]
    fake.queue(reply)
    with pytest.raises(HiDreamError) as info:
        call(client, kind)
    assert_token_hidden(info.value, token)


def test_token_with_surrounding_whitespace_is_still_hidden(settings, fake):
    # A token pasted from a file often ends with a newline; the client sends it stripped.
    settings.HIDREAM_API_TOKEN = "padded-token-4711\n"
    client = HiDreamClient(base_url=BASE)
    client.session.mount("http://", fake)
    fake.queue((401, "invalid token padded-token-4711", {}))
    with pytest.raises(HiDreamHTTPError) as info:
        client.get_model_image_result(TASK_ID)
    assert fake.requests[0].headers["Authorization"] == "Bearer padded-token-4711"
    assert_token_hidden(info.value, "padded-token-4711")


@pytest.mark.parametrize("offset", [280, 290, 296])
def test_token_cut_by_the_reply_excerpt_is_not_partly_shown(fake, offset):
    token = "Zq8secretQ-0123456789"
    client = HiDreamClient(base_url=BASE, token=token)
    client.session.mount("http://", fake)
    fake.queue((500, "x" * offset + token + " tail", {}))
    with pytest.raises(HiDreamHTTPError) as info:
        client.get_model_image_result(TASK_ID)
    assert token[:4] not in str(info.value)  # not even the first few characters


# -- missing token ---------------------------------------------------------------------------


def test_missing_token_fails_at_first_call_not_at_construction(settings, fake):
    settings.HIDREAM_API_TOKEN = ""
    client = HiDreamClient(base_url=BASE)  # must not raise
    client.session.mount("http://", fake)
    with pytest.raises(ImproperlyConfigured, match="HIDREAM_API_TOKEN"):
        client.get_model_image_result(TASK_ID)
    with pytest.raises(ImproperlyConfigured, match="HIDREAM_API_TOKEN"):
        client.submit_model_image(image="https://x.example/a.jpg", prompt="p")
    assert fake.requests == []


def test_base_url_trailing_slash_is_dropped(fake):
    client = HiDreamClient(base_url=BASE + "/", token="repr-secret-31337")
    client.session.mount("http://", fake)
    fake.queue(ok({"sub_task_results": []}))
    client.get_model_image_result("x")
    assert fake.requests[0].url.startswith(BASE + "/api-pub/")
    assert "hidream.test" in repr(client)
    assert "repr-secret-31337" not in repr(client)
