"""Plain helpers of the REST API tests (fixtures wrap them in ``tests/api/conftest.py``)."""

from __future__ import annotations

import base64
import io
import json

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.files.base import ContentFile
from django.utils import timezone
from PIL import Image
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from hidream_models import services
from hidream_models.models import GeneratedImage, ImageStatus, ModelImageTask, TaskStatus
from tests.conftest import make_image_bytes

API = "/api/hidream/"
TASKS = f"{API}tasks/"
BULK = f"{API}tasks/bulk/"
IMAGES = f"{API}images/"
TEMPLATES = f"{API}templates/"
SCHEMA = f"{API}schema/"
DOCS = f"{API}docs/"

VIEW_TASK = "hidream_models.view_modelimagetask"
VIEW_IMAGE = "hidream_models.view_generatedimage"
VIEW_TEMPLATE = "hidream_models.view_hidreamtemplate"
VIEW_ALL = (VIEW_TASK, VIEW_IMAGE, VIEW_TEMPLATE)
GENERATE = "hidream_models.generate"
REVIEW = "hidream_models.review"

TEMPLATE = {"template": {"human_template_id": "h-001", "scene_template_id": "s-001"}}
PROMPT = {"prompt": "a model in a sunny park"}


def task_url(task) -> str:
    return f"{TASKS}{getattr(task, 'pk', task)}/"


def image_url(image) -> str:
    return f"{IMAGES}{getattr(image, 'pk', image)}/"


def product_ref(product) -> str:
    return f"catalog.product:{product.pk}"


def png_bytes(size=(320, 400), color=(30, 120, 200)) -> bytes:
    return make_image_bytes(size=size, color=color, fmt="PNG")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def body(response):
    """The response's JSON body (fails the test when it is not JSON)."""
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    return json.loads(response.content)


def make_user(username, perms=(), *, superuser=False, staff=True):
    users = get_user_model().objects
    if superuser:
        return users.create_superuser(username, f"{username}@example.com", "pw")
    user = users.create_user(username, f"{username}@example.com", "pw", is_staff=staff)
    for name in perms:
        app_label, codename = name.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    return user


def json_client(**kwargs) -> APIClient:
    """An API client that sends JSON unless told otherwise (``format="multipart"``)."""
    client = APIClient(**kwargs)
    client.default_format = "json"
    return client


def token_client(user) -> APIClient:
    """An API client that authenticates as ``user`` with ``Authorization: Token <key>``."""
    token, _ = Token.objects.get_or_create(user=user)
    client = json_client()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


def options(**data):
    """Generation options: the template pair unless a ``prompt`` is given; two pictures."""
    base = {} if "prompt" in data else TEMPLATE
    return services.GenerationOptions.validated({**base, "image_count": 2, **data})


def make_task(product=None, status=TaskStatus.QUEUED, *, user=None, opts=None, **fields):
    """A task created the way the app creates them, then put into ``status``."""
    opts = opts or options()
    if product is not None:
        task = services.create_tasks_for_products([product], opts, user=user).tasks[0]
    else:
        task = services.create_task_for_image(
            opts, image_url="https://images.example.com/dress.jpg", user=user
        )
    ModelImageTask.objects.filter(pk=task.pk).update(status=status, **fields)
    task.refresh_from_db()
    return task


def make_generated_image(task, position=0, status=ImageStatus.STORED, *, with_file=None, **fields):
    """A picture of ``task`` as the download leaves it (a real PNG in storage when stored)."""
    with_file = status == ImageStatus.STORED if with_file is None else with_file
    image = GeneratedImage(
        task=task,
        sub_task_id=f"{task.pk}-sub-{position}",
        position=position,
        status=status,
        remote_status=1 if status == ImageStatus.STORED else 0,
        progress=1.0 if status == ImageStatus.STORED else 0.5,
        remote_url=f"https://storage.hidreamai.com/results/{task.pk}/{position}.png",
        **fields,
    )
    if with_file:
        data = png_bytes(size=(300 + position, 420), color=(10 * position, 160, 90))
        image.file.save(f"{task.pk}/{position}.png", ContentFile(data), save=False)
        with Image.open(io.BytesIO(data)) as picture:
            image.width, image.height = picture.size
        image.bytes = len(data)
        image.stored_at = timezone.now()
    image.save()
    return image
