"""Who may do what: the permission matrix, token and session authentication, CSRF."""

from __future__ import annotations

import json

import pytest
from rest_framework.authtoken.models import Token

from hidream_models.models import (
    GeneratedImage,
    HiDreamTemplate,
    ModelImageTask,
    ReviewState,
    TaskStatus,
    TemplateKind,
)
from tests.api.helpers import (
    BULK,
    GENERATE,
    IMAGES,
    PROMPT,
    REVIEW,
    SCHEMA,
    TASKS,
    TEMPLATES,
    VIEW_ALL,
    body,
    image_url,
    json_client,
    make_user,
    product_ref,
    task_url,
    token_client,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(make_product, task_factory, image_factory):
    """One object of each kind the endpoints need."""
    product = make_product()
    failed = task_factory(product, TaskStatus.FAILED)
    submitted = task_factory(product, TaskStatus.SUBMITTED, remote_task_id="rt-perm")
    image = image_factory(submitted, 0)
    template = HiDreamTemplate.objects.create(
        kind=TemplateKind.HUMAN, remote_id="h-001", name_en="Urban woman", gender="Woman"
    )
    return {
        "product": product,
        "failed": failed,
        "submitted": submitted,
        "image": image,
        "template": template,
    }


# name: (method, url, data) built from the world
ENDPOINTS = {
    "tasks-list": lambda w: ("get", TASKS, None),
    "tasks-detail": lambda w: ("get", task_url(w["failed"]), None),
    "images-list": lambda w: ("get", IMAGES, None),
    "images-detail": lambda w: ("get", image_url(w["image"]), None),
    "templates-list": lambda w: ("get", TEMPLATES, None),
    "templates-detail": lambda w: ("get", f"{TEMPLATES}{w['template'].pk}/", None),
    "tasks-create": lambda w: ("post", TASKS, {"product": product_ref(w["product"]), **PROMPT}),
    "tasks-bulk": lambda w: ("post", BULK, {"products": [product_ref(w["product"])], **PROMPT}),
    "tasks-retry": lambda w: ("post", f"{task_url(w['failed'])}retry/", {}),
    "tasks-refresh": lambda w: ("post", f"{task_url(w['submitted'])}refresh/", None),
    "images-approve": lambda w: ("post", f"{image_url(w['image'])}approve/", {}),
    "images-reject": lambda w: ("post", f"{image_url(w['image'])}reject/", {}),
}
READS = [name for name in ENDPOINTS if name.endswith(("-list", "-detail"))]
GENERATING = {"tasks-create": 201, "tasks-bulk": 201, "tasks-retry": 201, "tasks-refresh": 202}
NAMING_PRODUCTS = {"tasks-create", "tasks-bulk", "tasks-retry"}  # a retry generates again
VIEW_PRODUCT = "catalog.view_product"
REVIEWING = {"images-approve": 200, "images-reject": 200}

ROLES = {
    "no-permissions": (),
    "viewer": VIEW_ALL,
    "generator": (GENERATE,),
    "generator-of-products": (GENERATE, VIEW_PRODUCT),
    "generator-and-viewer": (GENERATE, VIEW_PRODUCT, *VIEW_ALL),
    "reviewer": (REVIEW,),
}


def expected_status(role: str, endpoint: str) -> int:
    perms = ROLES[role]
    if endpoint in READS:
        return 200 if VIEW_ALL[0] in perms else 403
    if endpoint in GENERATING:
        if endpoint in NAMING_PRODUCTS and VIEW_PRODUCT not in perms:
            return 403  # the product model's own view permission counts too
        return GENERATING[endpoint] if GENERATE in perms else 403
    return REVIEWING[endpoint] if REVIEW in perms else 403


def call(client, world, endpoint):
    method, url, data = ENDPOINTS[endpoint](world)
    return getattr(client, method)(url, data) if data is not None else getattr(client, method)(url)


def counts():
    return (
        ModelImageTask.objects.count(),
        GeneratedImage.objects.exclude(review_state=ReviewState.UNREVIEWED).count(),
    )


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_anonymous_gets_401_with_a_challenge(world, endpoint):
    before = counts()
    response = call(json_client(), world, endpoint)
    assert response.status_code == 401, response.content
    assert response["WWW-Authenticate"] == "Token"
    assert "credentials were not provided" in body(response)["detail"]
    assert counts() == before


def schema_operations(world) -> list[tuple[str, str]]:
    """Every operation the published schema lists, with ``{id}`` filled in."""
    admin = token_client(make_user("schema-reader", superuser=True))
    schema = json.loads(admin.get(SCHEMA, HTTP_ACCEPT="application/vnd.oai.openapi+json").content)
    operations = []
    for path, item in schema["paths"].items():
        some_id = str(world["failed"].pk) if path.startswith(TASKS) else "1"
        for method in item:
            if method in ("get", "post", "put", "patch", "delete"):
                operations.append((method, path.replace("{id}", some_id)))
    assert len(operations) >= len(ENDPOINTS)
    return operations


def test_anonymous_gets_401_on_every_operation_of_the_schema(world):
    client = json_client()
    for method, url in schema_operations(world):
        response = getattr(client, method)(url)
        assert response.status_code == 401, (method, url, response.status_code)
        assert response["WWW-Authenticate"] == "Token", (method, url)


def test_staff_without_permissions_gets_403_on_every_operation_of_the_schema(world):
    client = token_client(make_user("nobody"))
    before = counts()
    for method, url in schema_operations(world):
        response = getattr(client, method)(url)
        assert response.status_code == 403, (method, url, response.status_code)
    assert counts() == before


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
@pytest.mark.parametrize("role", list(ROLES))
def test_permission_matrix(world, role, endpoint):
    user = make_user(f"staff-{role}", ROLES[role])
    before = counts()
    response = call(token_client(user), world, endpoint)
    expected = expected_status(role, endpoint)
    assert response.status_code == expected, (role, endpoint, response.content)
    if expected == 403:
        assert "permission" in body(response)["detail"]
        assert counts() == before, "a refused request changed something"


def test_a_superuser_may_do_everything(world, superuser):
    client = token_client(superuser)
    for endpoint in ENDPOINTS:
        response = call(client, world, endpoint)
        assert response.status_code < 300, (endpoint, response.status_code, response.content)


def test_token_authentication(world, superuser):
    token = Token.objects.create(user=superuser)
    client = json_client()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert client.get(TASKS).status_code == 200

    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key[:-1]}x")
    refused = client.get(TASKS)
    assert refused.status_code == 401
    assert body(refused)["detail"] == "Invalid token."

    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token.key}")
    assert client.get(TASKS).status_code == 401


def test_token_of_an_inactive_user_is_refused(world):
    user = make_user("gone", (*VIEW_ALL, GENERATE))
    client = token_client(user)
    assert client.get(TASKS).status_code == 200
    user.is_active = False
    user.save()
    assert client.get(TASKS).status_code == 401


def test_session_authentication_for_reads(world):
    make_user("sessions", VIEW_ALL)
    client = json_client()
    assert client.login(username="sessions", password="pw")
    response = client.get(TASKS)
    assert response.status_code == 200
    assert body(response)["count"] == 2


def test_session_posts_need_the_csrf_token(world):
    make_user("sessions", (GENERATE, VIEW_PRODUCT, *VIEW_ALL))
    client = json_client(enforce_csrf_checks=True)
    assert client.login(username="sessions", password="pw")
    data = {"product": product_ref(world["product"]), **PROMPT}

    refused = client.post(TASKS, data)
    assert refused.status_code == 403
    assert "CSRF" in body(refused)["detail"]
    assert ModelImageTask.objects.count() == 2

    secret = "a" * 32
    client.cookies["csrftoken"] = secret
    accepted = client.post(TASKS, data, HTTP_X_CSRFTOKEN=secret)
    assert accepted.status_code == 201, accepted.content
    assert ModelImageTask.objects.count() == 3


def test_token_posts_need_no_csrf_token(world):
    user = make_user("robot", (GENERATE, VIEW_PRODUCT))
    token = Token.objects.create(user=user)
    client = json_client(enforce_csrf_checks=True)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    response = client.post(TASKS, {"product": product_ref(world["product"]), **PROMPT})
    assert response.status_code == 201, response.content
