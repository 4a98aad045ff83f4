"""Property-based tests of the whole API with Schemathesis, in-process over WSGI.

The schema is loaded from the running Django app (``/api/hidream/schema/``) and every operation
is called with generated requests as a superuser (token auth). Nothing leaves the process: the
werkzeug test client calls Django's WSGI handler directly.

- ``test_no_server_error``: valid, invalid and boundary requests; none may end in a 5xx.
- ``test_responses_conform_to_the_schema``: valid requests; every response body must match
  the schema the API publishes.
- ``test_status_codes_are_documented``: valid requests; every status code must be declared.
- ``test_stored_objects_conform_to_the_schema``: every object of the fixture, read through
  its detail and list operations, must match the schema (deterministic, no generation).
"""

from __future__ import annotations

import itertools
import tempfile
from pathlib import Path

import pytest
import schemathesis
from django.core.files.base import ContentFile
from django.core.handlers.wsgi import WSGIHandler
from hypothesis import HealthCheck, settings
from hypothesis.configuration import set_hypothesis_home_dir
from rest_framework.authtoken.models import Token
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from hidream_models import services
from hidream_models.models import (
    HiDreamTemplate,
    ImageStatus,
    ModelImageTask,
    ReviewState,
    TaskStatus,
    TemplateKind,
)
from tests.api.helpers import SCHEMA, make_generated_image, make_task, make_user, options, png_bytes

# Hypothesis keeps caches (constants, unicode data) in ./.hypothesis: keep them out of the repo.
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "hidream-api-tests-hypothesis")

HYPOTHESIS = settings(
    max_examples=10,
    deadline=None,
    database=None,  # nothing written outside tests/api
    derandomize=True,  # the same cases on every run
    suppress_health_check=list(HealthCheck),
)
# Schema-valid requests only: any status or body they get must be the documented one.
POSITIVE = schemathesis.Config.from_dict(
    {"generation": {"mode": "positive"}, "phases": {"coverage": {"enabled": False}}}
)
# Valid and invalid requests, plus the coverage phase's boundary cases: hunting for 5xx.
ALL_MODES = schemathesis.Config.from_dict({})


@pytest.fixture
def api_data(transactional_db, settings, make_product):
    """A superuser with a token, and a few of every kind of object for GET paths to find."""
    settings.HIDREAM_API_CREATE_RATE = ""  # fuzzing creates many tasks: no 429s
    admin = make_user("fuzzer", superuser=True)
    token = Token.objects.create(user=admin)
    maker = make_user("maker", ("hidream_models.generate",))
    products = [make_product() for _ in range(3)]
    failed = make_task(products[0], TaskStatus.FAILED, user=maker, error_message="boom")
    unconfirmed = make_task(products[1], TaskStatus.UNCONFIRMED, user=admin)
    submitted = make_task(products[2], TaskStatus.SUBMITTED, remote_task_id="rt-fuzz")
    partial = make_task(
        products[0],
        TaskStatus.PARTIAL,
        user=admin,
        remote_task_id="rt-partial",
        opts=options(prompt="on a beach"),
    )
    url_task = make_task(None, TaskStatus.QUEUED, user=admin)
    bulk = services.create_tasks_for_products(products[1:], options(), user=maker)
    stored = make_generated_image(partial, 0, ImageStatus.STORED)
    reviewed = make_generated_image(
        partial, 1, ImageStatus.STORED, review_state=ReviewState.APPROVED, reviewed_by=admin
    )
    failed_image = make_generated_image(partial, 2, ImageStatus.FAILED, failure_reason="refused")
    pending = make_generated_image(submitted, 0, ImageStatus.PENDING)
    human = HiDreamTemplate.objects.create(
        kind=TemplateKind.HUMAN, remote_id="h-001", name_en="Urban woman", gender="Woman"
    )
    human.preview.save("human-h-001.png", ContentFile(png_bytes()))
    scene = HiDreamTemplate.objects.create(  # its preview could not be copied at the sync
        kind=TemplateKind.SCENE,
        remote_id="s-001",
        name_en="Plain white studio",
        scenes_type="indoor scenes",
        region="China",
    )
    return {
        "token": token.key,
        "tasks": [failed, unconfirmed, submitted, partial, url_task, *bulk.tasks],
        "images": [stored, reviewed, failed_image, pending],
        "templates": [human, scene],
    }


# Loaded once, at collection, from the app itself: the schema view needs no database.
# (``schemathesis.pytest.from_fixture`` would load it per test, but its lazy runner reads
# ``request.node._nodeid``, which pytest 9.2 no longer has.)
APP = WSGIHandler()
positive = schemathesis.openapi.from_wsgi(SCHEMA, APP, config=POSITIVE)
any_input = schemathesis.openapi.from_wsgi(SCHEMA, APP, config=ALL_MODES)


def auth(api_data) -> dict[str, str]:
    return {"Authorization": f"Token {api_data['token']}"}


_calls = itertools.count()


def aim_at_real_objects(case, api_data):
    """Every other case with an ``{id}`` gets the id of an object of the fixture, so detail
    and action operations run on real rows (retry a failed task, approve a stored picture...)
    and not only into 404s."""
    if not case.path_parameters or "id" not in case.path_parameters:
        return
    n = next(_calls)
    kind = case.path.removeprefix("/api/hidream/").split("/", 1)[0]
    objects = api_data.get(kind)
    if n % 2 == 0 and objects:
        case.path_parameters["id"] = str(objects[(n // 2) % len(objects)].pk)


@any_input.parametrize()
@HYPOTHESIS
def test_no_server_error(case, api_data):
    aim_at_real_objects(case, api_data)
    case.call_and_validate(headers=auth(api_data), checks=[not_a_server_error])


@positive.parametrize()
@HYPOTHESIS
def test_responses_conform_to_the_schema(case, api_data):
    aim_at_real_objects(case, api_data)
    case.call_and_validate(
        headers=auth(api_data),
        checks=[not_a_server_error, response_schema_conformance, content_type_conformance],
    )


@positive.parametrize()
@HYPOTHESIS
def test_status_codes_are_documented(case, api_data):
    aim_at_real_objects(case, api_data)
    case.call_and_validate(headers=auth(api_data), checks=[status_code_conformance])


READS = [
    ("/api/hidream/tasks/{id}/", "tasks"),
    ("/api/hidream/images/{id}/", "images"),
    ("/api/hidream/templates/{id}/", "templates"),
]


@pytest.mark.parametrize(("path", "kind"), READS, ids=[kind for _, kind in READS])
def test_stored_objects_conform_to_the_schema(api_data, path, kind):
    """The list (all objects on one page) then each detail; Schemathesis reports every
    violation of a response at once."""
    list_operation = positive[path.removesuffix("{id}/")]["GET"]
    detail_operation = positive[path]["GET"]
    cases = [list_operation.Case(query={"page_size": 200})]
    cases += [detail_operation.Case(path_parameters={"id": obj.pk}) for obj in api_data[kind]]
    for case in cases:
        response = case.call(headers=auth(api_data))
        assert response.status_code == 200, response.text
        case.validate_response(response, checks=[response_schema_conformance])


def test_fixture_covers_every_state(api_data):
    # guards the fixture above: GET paths have every kind of object to find
    assert {t.status for t in api_data["tasks"]} >= {
        TaskStatus.FAILED,
        TaskStatus.UNCONFIRMED,
        TaskStatus.SUBMITTED,
        TaskStatus.PARTIAL,
        TaskStatus.QUEUED,
    }
    assert ModelImageTask.objects.filter(created_by__isnull=True).exists()
    assert {i.status for i in api_data["images"]} == {"stored", "failed", "pending"}
