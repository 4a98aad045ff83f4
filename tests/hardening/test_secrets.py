"""The API token never shows up anywhere but the Authorization header sent to HiDream, and
the per-task callback token never shows up in API output or in the logs of callbacks.

A distinctive token runs a whole flow against the simulator (a task finished by callback
over a live server, one by polling, a template sync) and against scripted servers that echo
it back (a business error, an HTTP error body, a reply that is not JSON). Then every place a
person or a log reader could look is searched: log records at DEBUG, command output, admin
pages, API responses, stored rows, the text of every HiDreamError raised, and what was sent.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.forms.models import model_to_dict
from django.urls import reverse
from django.utils import timezone

from hidream_models import services
from hidream_models.client import HiDreamClient
from hidream_models.conf import hidream_settings
from hidream_models.exceptions import HiDreamError
from hidream_models.models import (
    CallbackEvent,
    GeneratedImage,
    HiDreamTemplate,
    ImageStatus,
    ModelImageTask,
    TaskStatus,
)
from hidream_models.simulator import HiDreamSimulator
from tests import jobs
from tests.api.helpers import make_user, token_client
from tests.conftest import wait_for
from tests.stub_server import StubServer

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

TOKEN = "sekrit-TOKEN-31337"
LOGGERS = ("", "django", "django.request", "django.server", "hidream_models", "urllib3")
SENDER_LOGGERS = ("hidream_models.simulator",)  # HiDream's side of the callback, not ours


def _options(**data):
    base = (
        {}
        if "prompt" in data
        else {"template": {"human_template_id": "h-001", "scene_template_id": "s-001"}}
    )
    return services.GenerationOptions.validated({**base, "image_count": 2, **data})


@pytest.fixture
def secret_sim(settings):
    settings.HIDREAM_API_TOKEN = TOKEN
    sim = HiDreamSimulator(host="127.0.0.1", port=0, token=TOKEN, delay=0.3).start()
    settings.HIDREAM_BASE_URL = sim.base_url
    settings.HIDREAM_POLL_INTERVAL = 1
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture
def all_logs(caplog):
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name or None)
    return caplog


@pytest.fixture
def raised(monkeypatch):
    """Every HiDreamError constructed while the test runs (wherever it is caught)."""
    seen: list[HiDreamError] = []
    original = HiDreamError.__init__

    def recording_init(self, *args, **kwargs):
        seen.append(self)
        original(self, *args, **kwargs)

    monkeypatch.setattr(HiDreamError, "__init__", recording_init)
    return seen


def _from_the_sender(record) -> bool:
    """Records HiDream's side writes: the simulator's own log, and urllib3's DEBUG line for
    its POST to notify_url (the shop never calls its own callback URL)."""
    if record.name.startswith(SENDER_LOGGERS):
        return True
    return record.name.startswith("urllib3") and "/hidream/callback/" in record.getMessage()


STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def _log_texts(caplog, *, skip_sender=False) -> list[str]:
    texts = []
    for record in caplog.records:
        if skip_sender and _from_the_sender(record):
            continue
        texts.append(record.getMessage())
        texts.append(repr(record.args))
        if record.exc_info and record.exc_info[1] is not None:
            texts.append(logging.Formatter().formatException(record.exc_info))
        if record.exc_text:
            texts.append(record.exc_text)
        extra = {key: value for key, value in vars(record).items() if key not in STANDARD}
        texts.append(repr(extra))
    return texts


def _run(command, *args) -> str:
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command(command, *args, stdout=out, stderr=err)
    except CommandError as exc:
        err.write(f"CommandError: {exc}")
    return out.getvalue() + err.getvalue()


def _rows() -> str:
    parts = []
    for model in (CallbackEvent, ModelImageTask, GeneratedImage, HiDreamTemplate):
        for obj in model.objects.all():
            parts.append(json.dumps(model_to_dict(obj), default=str, ensure_ascii=False))
            parts.append(repr(obj) + str(obj))
    return "\n".join(parts)


def _admin_pages(client) -> dict[str, str]:
    urls = {
        "task list": reverse("admin:hidream_models_modelimagetask_changelist"),
        "callback list": reverse("admin:hidream_models_callbackevent_changelist"),
        "image list": reverse("admin:hidream_models_generatedimage_changelist"),
        "template list": reverse("admin:hidream_models_hidreamtemplate_changelist"),
        "review queue": reverse("admin:hidream_models_review_queue"),
    }
    for task in ModelImageTask.objects.all():
        urls[f"task {task.pk}"] = reverse(
            "admin:hidream_models_modelimagetask_change", args=[task.pk]
        )
        if task.object_id:
            urls[f"product {task.object_id}"] = reverse(
                "admin:catalog_product_change", args=[task.object_id]
            )
    for event in CallbackEvent.objects.all():
        urls[f"callback {event.pk}"] = reverse(
            "admin:hidream_models_callbackevent_change", args=[event.pk]
        )
    for image in GeneratedImage.objects.all():
        urls[f"image {image.pk}"] = reverse(
            "admin:hidream_models_generatedimage_change", args=[image.pk]
        )
    for template in HiDreamTemplate.objects.all()[:3]:
        urls[f"template {template.pk}"] = reverse(
            "admin:hidream_models_hidreamtemplate_change", args=[template.pk]
        )
    pages = {}
    for where, url in urls.items():
        response = client.get(url)
        assert response.status_code == 200, (where, response.status_code)
        pages[where] = response.content.decode()
    return pages


def _api_outputs(api) -> dict[str, str]:
    paths = [
        "/api/hidream/tasks/",
        "/api/hidream/images/",
        "/api/hidream/templates/",
        "/api/hidream/presets/",
        "/api/hidream/schema/",
        "/api/hidream/schema/?format=json",
    ]
    paths += [f"/api/hidream/tasks/{task.pk}/" for task in ModelImageTask.objects.all()]
    paths += [f"/api/hidream/images/{image.pk}/" for image in GeneratedImage.objects.all()]
    outputs = {}
    for path in paths:
        response = api.get(path)
        assert response.status_code == 200, (path, response.status_code)
        outputs[path] = response.content.decode()
    return outputs


def _where(needle: str, haystacks: dict[str, str]) -> list[str]:
    return [name for name, text in haystacks.items() if needle in text]


def _echo(status, body, content_type="application/json"):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return (status, {"Content-Type": content_type, "X-Echo": f"Bearer {TOKEN}"}, data, 0)


ECHO_BUSINESS = _echo(
    200,
    {
        "code": 4001,
        "message": f"token {TOKEN} is not allowed (Authorization: Bearer {TOKEN})",
        "request_id": f"req-{TOKEN}",
        "result": {"echo": TOKEN},
    },
)
ECHO_500 = _echo(500, f"Internal error while checking Bearer {TOKEN}\n".encode(), "text/plain")
ECHO_NOT_JSON = _echo(200, f"<html><body>token={TOKEN}</body></html>".encode(), "text/html")
ECHO_401 = _echo(401, {"code": 4010, "message": f"invalid token {TOKEN}", "request_id": TOKEN})
ECHO_BAD_SHAPE = _echo(200, {"code": 0, "message": "ok", "result": {"task": TOKEN}})


def test_the_api_token_appears_nowhere(
    secret_sim, live_server, settings, make_product, run_jobs, client, all_logs, raised
):
    outputs: dict[str, str] = {}
    settings.HIDREAM_MAX_ATTEMPTS = 1

    # 1. A task finished by callback (simulator → live server → callback view → download).
    settings.HIDREAM_CALLBACK_BASE_URL = live_server.url
    by_callback = services.create_tasks_for_products([make_product()], _options()).tasks[0]
    run_jobs()
    wait_for(lambda: CallbackEvent.objects.filter(task=by_callback).exists(), message="callback")
    wait_for(
        lambda: "apply_received_callbacks" in [j.task.name for j in jobs.pending_jobs()],
        message="the callback stored and queued",
    )
    run_jobs()  # applies it, then downloads the 2 pictures
    by_callback.refresh_from_db()
    assert by_callback.status == TaskStatus.SUCCEEDED, by_callback.error_message
    assert CallbackEvent.objects.get(task=by_callback).outcome == "applied"

    # 2. A task finished by polling, through the hidream_sync command.
    settings.HIDREAM_CALLBACK_BASE_URL = ""
    by_polling = services.create_tasks_for_products(
        [make_product()], _options(prompt="a model on a beach")
    ).tasks[0]
    run_jobs()
    sync_output = []

    def polled_done():
        sync_output.append(_run("hidream_sync", "-v", "2"))
        return (
            GeneratedImage.objects.filter(task=by_polling, status=ImageStatus.DOWNLOADING).count()
            == 2
        )

    wait_for(polled_done, timeout=15, interval=0.3, message="polling")
    run_jobs()
    by_polling.refresh_from_db()
    assert by_polling.status == TaskStatus.SUCCEEDED, by_polling.error_message
    outputs["hidream_sync"] = "\n".join(sync_output)

    # 3. Templates, and the system checks.
    outputs["hidream_sync_templates"] = _run("hidream_sync_templates")
    assert HiDreamTemplate.objects.exists()
    outputs["check"] = _run("check")

    # 4. Servers that echo the token back, on the submit, poll and template paths.
    echoes = {
        "business error": ECHO_BUSINESS,
        "HTTP 500": ECHO_500,
        "not JSON": ECHO_NOT_JSON,
        "HTTP 401": ECHO_401,
        "bad shape": ECHO_BAD_SHAPE,
    }
    stub_requests = []
    for name, reply in echoes.items():
        with StubServer([reply]) as stub:
            settings.HIDREAM_BASE_URL = stub.url
            task = services.create_tasks_for_products([make_product()], _options()).tasks[0]
            run_jobs()
            task.refresh_from_db()
            assert task.status in (TaskStatus.FAILED, TaskStatus.UNCONFIRMED), (name, task.status)
            assert task.error_message, name
            polled = ModelImageTask.objects.create(
                mode="prompt",
                prompt="p",
                status=TaskStatus.SUBMITTED,
                remote_task_id=f"remote-{name}",
                sub_task_ids=["s1"],
                submitted_at=timezone.now() - timedelta(minutes=5),
            )
            # The tasks polled for the echoes before are done with: a pass stops polling at
            # its first failure here (HIDREAM_MAX_ATTEMPTS = 1) and would not reach this one.
            ModelImageTask.objects.filter(remote_task_id__startswith="remote-").exclude(
                pk=polled.pk
            ).update(status=TaskStatus.FAILED)
            if reply is not ECHO_500:  # a 5xx GET is retried with backoff: direct calls only
                outputs[f"hidream_sync ({name})"] = _run("hidream_sync")
                polled.refresh_from_db()
                assert polled.error_message, name
                outputs[f"hidream_sync_templates ({name})"] = _run(
                    "hidream_sync_templates", "--no-previews"
                )
            with HiDreamClient(http_retries=0) as direct:
                for call in (
                    lambda c=direct: c.get_model_image_result("t-1"),
                    lambda c=direct: c.list_templates("human"),
                ):
                    with contextlib.suppress(HiDreamError):
                        call()
        stub_requests += stub.requests
    settings.HIDREAM_BASE_URL = secret_sim.base_url

    # The token did travel, in the Authorization header only.
    assert stub_requests
    for _method, path, headers, body in stub_requests:
        assert headers.get("Authorization") == f"Bearer {TOKEN}"
        assert TOKEN.encode() not in body and TOKEN not in path
    assert raised, "the echoing servers raised no HiDreamError at all"

    # 5. Look everywhere.
    superuser = make_user("root", superuser=True)
    client.force_login(superuser)
    haystacks = {
        **outputs,
        **{f"admin {k}": v for k, v in _admin_pages(client).items()},
        **{f"API {k}": v for k, v in _api_outputs(token_client(superuser)).items()},
        "stored rows": _rows(),
        "exceptions": "\n".join(f"{exc!s}\n{exc!r}\n{exc.args!r}" for exc in raised),
        "simulator submissions": json.dumps(secret_sim.submissions, ensure_ascii=False),
        "settings repr": repr(hidream_settings) + repr(HiDreamClient()),
    }
    for index, text in enumerate(_log_texts(all_logs)):
        haystacks[f"log record {index}"] = text
    haystacks["log text"] = all_logs.text
    assert _where(TOKEN, haystacks) == []
    # A looser look: the token's distinctive middle part, in any case.
    lowered = {name: text.lower() for name, text in haystacks.items()}
    assert _where("token-31337", lowered) == []
    # The flow really produced what was searched.
    assert any(
        "Internal error" in exc.body_excerpt for exc in raised if hasattr(exc, "body_excerpt")
    )
    assert "***" in "\n".join(str(exc) for exc in raised)


def test_callback_tokens_stay_out_of_api_output_and_logs(
    secret_sim, live_server, settings, make_product, run_jobs, client, all_logs
):
    settings.HIDREAM_CALLBACK_BASE_URL = live_server.url
    tasks = services.create_tasks_for_products(
        [make_product(), make_product()], _options(image_count=1)
    ).tasks
    run_jobs()
    wait_for(
        lambda: (
            CallbackEvent.objects.count() == 2
            and "apply_received_callbacks" in [j.task.name for j in jobs.pending_jobs()]
        ),
        message="both callbacks stored and queued",
    )
    run_jobs()
    assert CallbackEvent.objects.filter(outcome="applied").count() == 2
    for task in tasks:
        task.refresh_from_db()
        assert task.status == TaskStatus.SUCCEEDED, task.error_message
    sent = [submission["notify_url"] for submission in secret_sim.submissions]
    tokens = [task.callback_token for task in tasks]
    assert all(any(token in url for url in sent) for token in tokens)  # really sent to HiDream

    # A callback with a WRONG token: logged (a 404) with its task id, the token masked all
    # the same (a wrong one is no key, but the line need not tell which it was).
    wrong = reverse("hidream_models:callback", kwargs={"task_id": tasks[0].pk, "token": "W" * 43})
    response = client.post(wrong, data="{}", content_type="application/json")
    assert response.status_code == 404

    superuser = make_user("root", superuser=True)
    api_outputs = _api_outputs(token_client(superuser))
    client.force_login(superuser)
    admin_pages = _admin_pages(client)
    logs = {
        f"log record {index}": text
        for index, text in enumerate(_log_texts(all_logs, skip_sender=True))
    }
    commands = {"hidream_sync": _run("hidream_sync", "-v", "2"), "check": _run("check")}
    for token in tokens:
        assert _where(token, api_outputs) == [], "callback token in API output"
        assert _where(token, admin_pages) == [], "callback token on an admin page"
        assert [logs[k] for k in _where(token, logs)] == [], "callback token in the logs"
        assert _where(token, commands) == [], "callback token in command output"
    assert not any("W" * 43 in text for text in logs.values()), "a wrong token was logged"
    masked = f"/hidream/callback/{tasks[0].pk}/***/ answered 404"
    assert any(masked in text for text in logs.values()), "the 404 was not logged at all"


def test_a_rejected_callback_with_the_right_token_does_not_log_it(client, all_logs):
    """A callback that is refused (400) after the token matched is logged by django.request
    as ``Bad Request: <path>``: the path holds the valid token, which then sits in the logs
    of anyone who reads them (and the same for 413 and 500 answers)."""
    task = ModelImageTask.objects.create(
        mode="prompt",
        prompt="p",
        status=TaskStatus.SUBMITTED,
        remote_task_id="r-1",
        sub_task_ids=["s1"],
    )
    url = reverse(
        "hidream_models:callback", kwargs={"task_id": task.pk, "token": task.callback_token}
    )
    response = client.post(url, data="{not json", content_type="application/json")
    assert response.status_code == 400
    logs = {f"log record {i}": t for i, t in enumerate(_log_texts(all_logs))}
    assert _where(task.callback_token, logs) == []


def test_a_proxy_header_repeating_the_callback_url_is_stored_masked(client):
    """Proxies repeat the URL in headers (X-Original-URL, X-Forwarded-Uri, Referer): the stored
    headers, which the admin shows, must not keep the token."""
    from hidream_models.models import CallbackEvent

    task = ModelImageTask.objects.create(
        mode="prompt", prompt="p", status=TaskStatus.SUBMITTED, remote_task_id="r-1"
    )
    url = reverse(
        "hidream_models:callback", kwargs={"task_id": task.pk, "token": task.callback_token}
    )
    body = '{"code": 0, "result": {"task_id": "r-1", "sub_task_results": []}}'
    response = client.post(
        url,
        data=body,
        content_type="application/json",
        headers={"X-Original-URL": url, "Referer": f"https://proxy.example{url}?a=1"},
    )
    assert response.status_code == 200
    event = CallbackEvent.objects.get(task=task)
    stored = str(event.headers)
    assert task.callback_token not in stored
    assert f"/hidream/callback/{task.pk}/***/" in event.headers["X-Original-Url"]
