"""The callback token is in no log record and no error report.

The token in ``/hidream/callback/<task>/<token>/`` is the only key to a task's callback URL.
Django logs the path of every 4xx and 5xx it answers ("Method Not Allowed: <path>",
"Internal Server Error: <path>", mailed to the admins with the request), and runserver logs
every request line. So: every answer of the callback URL (200, 400, 404, 405 for any verb,
413, 500, 503) is captured with all loggers at DEBUG and an ``AdminEmailHandler`` that
includes the HTML report, and neither a valid token nor a wrong one may appear in any
record (message, arguments, traceback, extras) or mail. ``MaskCallbackTokens`` is tested on
its own, and through the demo's LOGGING in a process of its own, as runserver would log.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from django.http import HttpRequest
from django.test import RequestFactory
from django.urls import reverse
from django.utils.log import AdminEmailHandler

from hidream_models.logging import MaskCallbackTokens, mask_callback_tokens
from hidream_models.models import CallbackEvent, ModelImageTask, TaskStatus

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parent.parent.parent
WRONG = "f" * 64  # a wrong token, no secret, but masked all the same
LOGGERS = ("", "django", "django.request", "django.security", "django.server", "hidream_models")
STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


@pytest.fixture
def task(db):
    return ModelImageTask.objects.create(
        mode="prompt",
        prompt="summer look",
        image_count=1,
        status=TaskStatus.SUBMITTED,
        remote_task_id="remote-1",
        sub_task_ids=["sub-a"],
    )


@pytest.fixture
def every_record(caplog):
    """Every record of every logger, at DEBUG: runserver's (which does not propagate) too."""
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name or None)
    server = logging.getLogger("django.server")
    server.addHandler(caplog.handler)
    yield caplog
    server.removeHandler(caplog.handler)


@pytest.fixture
def admin_mails(settings, mailoutbox):
    """Error mails as a site would send them: Django's ``mail_admins`` handler on the
    "django" logger (active, DEBUG being off in tests), and one with the HTML report (local
    variables and all) on the root logger, which the app's own loggers reach."""
    settings.ADMINS = ["ops@shop.example"]
    # Mail through a MAILERS alias, as Django 6.1 wants (its default mailer is deprecated).
    settings.MAILERS = {"default": {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"}}
    handler = AdminEmailHandler(include_html=True)
    handler.setLevel(logging.ERROR)
    root = logging.getLogger()
    root.addHandler(handler)
    yield mailoutbox
    root.removeHandler(handler)


def record_texts(record: logging.LogRecord) -> list[str]:
    """Everything of a record a handler could write or send."""
    texts = [record.getMessage(), repr(record.msg), repr(record.args)]
    if record.exc_info and record.exc_info[1] is not None:
        texts.append(logging.Formatter().formatException(record.exc_info))
    texts += [record.exc_text or "", record.stack_info or ""]
    extra = {key: value for key, value in vars(record).items() if key not in STANDARD}
    texts.append(repr(extra))
    request = extra.get("request")
    if isinstance(request, HttpRequest):
        texts += [request.path, request.get_full_path(), repr(dict(request.META))]
    return texts


def mail_texts(message) -> list[str]:
    texts = [message.subject, message.body]
    texts += [content for content, _mimetype in getattr(message, "alternatives", [])]
    return texts


def callback_path(task_id, token: str, *, slash: bool = True) -> str:
    path = reverse("hidream_models:callback", kwargs={"task_id": task_id, "token": token})
    return path if slash else path.rstrip("/")


def test_no_answer_of_the_callback_url_logs_or_mails_the_token(
    client, task, settings, monkeypatch, every_record, admin_mails
):
    from django.db import OperationalError

    from hidream_models import webhooks

    client.raise_request_exception = False
    token = task.callback_token
    url = callback_path(task.pk, token)
    valid = json.dumps(
        {"task_id": "remote-1", "sub_task_results": [{"sub_task_id": "sub-a", "task_status": 2}]}
    )
    gone = ModelImageTask.objects.create(mode="prompt", prompt="p", status=TaskStatus.SUBMITTED)
    gone_id, gone_token = gone.pk, gone.callback_token
    gone_url = callback_path(gone_id, gone_token)
    gone.delete()

    def post(path=url, body=valid, **extra):
        return client.post(path, data=body, content_type="application/json", **extra)

    def failing(*args, **kwargs):
        raise RuntimeError("an injected failure")

    def database_down(*args, **kwargs):
        raise OperationalError("database is locked")

    answers = {}
    answers["200"] = (200, post())
    answers["200 without the slash"] = (200, post(callback_path(task.pk, token, slash=False)))
    answers["200 OPTIONS"] = (200, client.options(url))
    answers["400 not JSON"] = (400, post(body="{not json"))
    answers["400 Content-Length"] = (400, post(CONTENT_LENGTH="12abc"))
    answers["404 wrong token"] = (404, post(callback_path(task.pk, WRONG)))
    answers["404 task deleted"] = (404, post(gone_url))
    answers["405 GET"] = (405, client.get(url))
    answers["405 HEAD"] = (405, client.head(url))
    answers["405 PUT"] = (405, client.put(url, data=valid, content_type="application/json"))
    answers["405 DELETE"] = (405, client.delete(url))
    answers["405 an unknown verb"] = (405, client.generic("BREW", url))
    answers["413"] = (413, post(CONTENT_LENGTH=str(10**9)))
    with monkeypatch.context() as patch:
        patch.setattr(webhooks, "check_callback_body", failing)
        answers["500"] = (500, post())
    with monkeypatch.context() as patch:
        patch.setattr(webhooks, "store_callback", database_down)
        answers["503"] = (503, post())
    # When DEBUG, CommonMiddleware would raise a RuntimeError for a POST without the slash.
    settings.DEBUG = True
    answers["200 without the slash, DEBUG"] = (
        200,
        post(callback_path(task.pk, token, slash=False)),
    )
    settings.DEBUG = False

    for name, (status, response) in answers.items():
        assert response.status_code == status, (name, response.status_code, response.content)
        assert getattr(response, "_has_been_logged", False), name  # Django adds no line
        if response.content:
            assert response["Content-Type"] == "application/json", name
            assert response.json()["ok"] is (status == 200), name
    assert answers["405 an unknown verb"][1]["Allow"] == "POST, OPTIONS"
    assert "send it again" in answers["500"][1].json()["error"]
    assert CallbackEvent.objects.filter(task=task).count() == 4  # 200, 200, 400, 200 (DEBUG)

    records = every_record.records
    texts = [text for record in records for text in record_texts(record)]
    texts.append(every_record.text)
    mails = [text for message in admin_mails for text in mail_texts(message)]
    for secret in (token, gone_token, WRONG):
        assert [text for text in texts if secret in text] == [], "a token in a log record"
        assert [text for text in mails if secret in text] == [], "a token in an error mail"

    # Each refusal was logged, once, by the view: with the task id, the token masked.
    masked = f"/hidream/callback/{task.pk}/***/"
    lines = [record.getMessage() for record in records]
    refusals = [name for name, (status, _) in answers.items() if status >= 400]
    assert sum(masked in line for line in lines) == len(refusals) - 1, lines  # + the deleted
    assert any(f"/hidream/callback/{gone_id}/***/" in line for line in lines)
    assert not [r for r in records if r.name == "django.request"], "Django logged a path"
    failure = next(r for r in records if "answered 500" in r.getMessage())
    assert failure.exc_info and "an injected failure" in every_record.text
    assert any(
        "database is locked" in text for message in admin_mails for text in mail_texts(message)
    )
    assert len(admin_mails) >= 2  # the 500 and the 503 were mailed, without the token


# -- MaskCallbackTokens -----------------------------------------------------------------------

TASK_ID = uuid.UUID("8e481d6c-fa35-43da-8f3f-7de318b0e99a")
TOKEN = "0123456789abcdef" * 4
PATH = f"/hidream/callback/{TASK_ID}/{TOKEN}/"
MASKED = f"/hidream/callback/{TASK_ID}/***/"


def masked(record: logging.LogRecord) -> logging.LogRecord:
    assert MaskCallbackTokens().filter(record) is True  # masks, never drops
    return record


def make_record(msg, args=(), **attrs) -> logging.LogRecord:
    record = logging.LogRecord("django.server", logging.INFO, __file__, 1, msg, args, None)
    record.__dict__.update(attrs)
    return record


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (PATH, MASKED),
        (PATH.rstrip("/"), MASKED.rstrip("/")),
        (f"{PATH}?x=1", f"{MASKED}?x=1"),
        (f"https://shop.example{PATH}", f"https://shop.example{MASKED}"),
        (f"/hooks/callback/{TASK_ID}/{TOKEN}", f"/hooks/callback/{TASK_ID}/***"),
        (
            f"/hidream/callback/{str(TASK_ID).upper()}/{TOKEN}/",
            f"/hidream/callback/{str(TASK_ID).upper()}/***/",
        ),
        (f"/hidream/callback/{TASK_ID}%2F{TOKEN}/", f"/hidream/callback/{TASK_ID}%2F***/"),
        (f"/hidream/callback/{TASK_ID}/%61%62{TOKEN}/", MASKED),
        (f"'{PATH}' and \"{PATH}\"", f"'{MASKED}' and \"{MASKED}\""),
        ("/hidream/callback/not-a-task/abc/", "/hidream/callback/not-a-task/abc/"),
    ],
)
def test_mask_callback_tokens(text, expected):
    assert mask_callback_tokens(text) == expected


def test_a_runserver_request_line_is_masked_in_its_arguments():
    record = masked(
        make_record('"%s" %s %s', (f"POST {PATH} HTTP/1.1", "200", "12"), status_code=200)
    )
    assert record.args == (f"POST {MASKED} HTTP/1.1", "200", "12")
    assert record.msg == '"%s" %s %s'  # the format stays: formatters and Sentry group by it
    assert record.getMessage() == f'"POST {MASKED} HTTP/1.1" 200 12'


def test_messages_mapping_arguments_split_paths_and_tracebacks_are_masked():
    assert masked(make_record(f"Not Found: {PATH}")).getMessage() == f"Not Found: {MASKED}"
    assert masked(make_record("%(path)s", ({"path": PATH},))).getMessage() == MASKED
    # A token in an argument of its own, after the rest of the path: the text is masked.
    split = masked(make_record("%s%s/", (PATH.rsplit("/", 2)[0] + "/", TOKEN)))
    assert TOKEN not in split.getMessage() and TOKEN not in repr(split.args)
    try:
        raise ValueError(f"cannot handle {PATH}")
    except ValueError:
        record = make_record("failed", exc_info=sys.exc_info())
    assert TOKEN not in masked(record).exc_text and MASKED in record.exc_text
    assert TOKEN not in logging.Formatter().format(record)
    # Numbers stay numbers, for %d.
    assert masked(make_record("%d callbacks", (3,))).getMessage() == "3 callbacks"


def test_the_request_of_a_record_is_replaced_by_a_masked_copy():
    request = RequestFactory().post(PATH, data="{}", content_type="application/json")
    record = masked(make_record("Bad Request: %s", (PATH,), request=request))
    shown = record.request
    assert shown is not request and request.path == PATH  # the real one is left alone
    assert shown.path == MASKED and shown.path_info == MASKED and shown.META["PATH_INFO"] == MASKED
    assert TOKEN not in repr(shown) and TOKEN not in shown.build_absolute_uri()
    assert TOKEN not in repr(dict(shown.META)) and TOKEN not in repr(dict(shown.headers))
    # runserver's records carry its socket as "request": left as it is.
    sock = object()
    assert masked(make_record("x", request=sock)).request is sock


def test_the_demo_logging_masks_runserver_lines_and_djangos(tmp_path):
    """shop_demo's LOGGING, set up by Django in a process of its own as runserver has it:
    the request line runserver logs to "django.server", Django's "Not Found" line and the
    app's own, all written to stderr with the token masked."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("DJANGO_")}
    env.update(
        DJANGO_SETTINGS_MODULE="shop_demo.settings",
        DEBUG="true",
        SECRET_KEY="a-key-for-this-test-only-" + "x" * 40,
        DEMO_VAR_DIR=str(tmp_path / "var"),
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
    )
    script = f"""
import logging, django
django.setup()
from django.utils.log import log_message
# What django.core.servers.basehttp.WSGIRequestHandler.log_message does for each request.
log_message(logging.getLogger("django.server"), '"%s" %s %s', "POST {PATH} HTTP/1.1", "200",
            "12", request=object(), status_code=200, server_time="07/Dec/2025 18:00:00")
logging.getLogger("django.request").warning("Not Found: %s", "{PATH}extra")
logging.getLogger("hidream_models.webhooks").warning("seen %s", "{PATH}")
"""
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    output = done.stdout + done.stderr
    assert TOKEN not in output, output
    assert f'"POST {MASKED} HTTP/1.1" 200 12' in output, output
    assert f"Not Found: {MASKED}" in output and f"seen {MASKED}" in output, output
    assert not (tmp_path / "var" / "secret_key").exists()  # SECRET_KEY came from the env


def test_the_filter_is_on_every_handler_of_the_demo_logging():
    from shop_demo import settings as demo

    config = demo.LOGGING
    assert config["filters"]["mask_callback_tokens"]["()"] == (
        "hidream_models.logging.MaskCallbackTokens"
    )
    for name, handler in config["handlers"].items():
        assert "mask_callback_tokens" in handler.get("filters", []), name
    assert config["loggers"]["django.server"]["handlers"] == ["django.server"]
    assert set(config["loggers"]["django"]["handlers"]) == {"django.console", "mail_admins"}


# The recipe of docs/security.md for gunicorn's access and error logs.
GUNICORN_CONF = """
logconfig_dict = {
    "filters": {"mask_callback_tokens": {"()": "hidream_models.logging.MaskCallbackTokens"}},
    "loggers": {
        "gunicorn.error": {
            "level": "INFO", "handlers": ["error_console"], "propagate": False,
            "filters": ["mask_callback_tokens"],
        },
        "gunicorn.access": {
            "level": "INFO", "handlers": ["console"], "propagate": False,
            "filters": ["mask_callback_tokens"],
        },
    },
}
"""
WSGI_APP = """
def application(environ, start_response):
    if "boom" in environ.get("QUERY_STRING", ""):
        raise RuntimeError("boom")
    start_response("200 OK", [("Content-Type", "application/json")])
    return [b'{"ok": true}']
"""


def test_the_gunicorn_recipe_masks_its_access_and_error_logs(tmp_path):
    """gunicorn writes its own access line (and "Error handling request <uri>") outside
    Django's logging: its logconfig_dict with the app's filter masks both."""
    import http.client
    import signal
    import socket
    import time

    (tmp_path / "gunicorn.conf.py").write_text(GUNICORN_CONF)
    (tmp_path / "demo_wsgi.py").write_text(WSGI_APP)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    gunicorn = Path(sys.executable).with_name("gunicorn")
    server = subprocess.Popen(
        [
            str(gunicorn),
            *("-c", "gunicorn.conf.py", "-b", f"127.0.0.1:{port}", "--no-control-socket"),
            "demo_wsgi",
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert time.monotonic() < deadline and server.poll() is None, "gunicorn did not start"
            time.sleep(0.1)
        for query in ("", "?boom=1"):
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            connection.request("POST", PATH + query, body=b"{}")
            connection.getresponse().read()
            connection.close()
    finally:
        server.send_signal(signal.SIGTERM)
        out, err = server.communicate(timeout=30)
    logs = out + err
    assert TOKEN not in logs, logs
    assert f'"POST {MASKED} HTTP/1.1" 200' in logs, logs
    assert f"Error handling request POST {MASKED}?boom=1" in logs, logs


def test_doubled_slashes_are_masked_too():
    from hidream_models.logging import mask_callback_tokens

    task_id = "2c560cbc-d04d-470e-8b60-7df21761822e"
    for path in (
        f"Not Found: /hidream/callback//{task_id}/SECRET/",
        f"Not Found: /hidream//callback/{task_id}//SECRET",
    ):
        assert "SECRET" not in mask_callback_tokens(path)
