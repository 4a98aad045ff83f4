"""Run by ``test_bare_project.py`` in a process of its own, under ``bare_settings``: migrate an
in-memory database, then call the API with a Token header and a session, and print what came
back as JSON (one object) for the test to judge."""

import json
import os

os.environ["DJANGO_SETTINGS_MODULE"] = "tests.api.bare_settings"

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.test import Client  # noqa: E402
from rest_framework.authtoken.models import Token  # noqa: E402

call_command("migrate", verbosity=0, interactive=False)
user = get_user_model().objects.create_superuser("owner", "owner@example.com", "pw")
token = Token.objects.create(user=user)
client = Client()
found = {}
tasks = client.get("/api/hidream/tasks/", HTTP_AUTHORIZATION=f"Token {token.key}")
found["token_tasks"] = tasks.status_code
found["anonymous_tasks"] = client.get("/api/hidream/tasks/").status_code
found["anonymous_www_authenticate"] = client.get("/api/hidream/tasks/").get("WWW-Authenticate")
schema = client.get("/api/hidream/schema/?format=json", HTTP_AUTHORIZATION=f"Token {token.key}")
found["schema"] = schema.status_code
if schema.status_code == 200:
    document = json.loads(schema.content)
    found["schema_paths"] = sorted(document["paths"])
    bulk = document["paths"]["/api/hidream/tasks/bulk/"]["post"]
    found["bulk_responses"] = sorted(bulk["responses"])
client.force_login(user)
found["session_tasks"] = client.get("/api/hidream/tasks/?page_size=1").status_code
print(json.dumps(found))
