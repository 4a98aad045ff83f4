"""The demo's URLs, with HiDream's callback view run one request at a time (SQLite only).

pytest-django's ``live_server`` hands its request threads the test's own in-memory SQLite
connection: parallel requests then interleave their transactions on one connection (500s,
even wrong rows). That is the test harness, not the app: PostgreSQL runs them in parallel
for real. On SQLite the reliability tests point ``ROOT_URLCONF`` here, and anything else
that touches the database while callbacks may be arriving holds ``LOCK`` too.
"""

from __future__ import annotations

import functools
import threading

from django.urls import path

from hidream_models.webhooks import HiDreamCallbackView
from shop_demo.urls import urlpatterns as demo_urlpatterns

LOCK = threading.RLock()
_callback = HiDreamCallbackView.as_view()


@functools.wraps(_callback)  # keeps csrf_exempt and the other view flags
def serialised_callback(request, *args, **kwargs):
    with LOCK:
        return _callback(request, *args, **kwargs)


urlpatterns = [
    path("hidream/callback/<uuid:task_id>/<str:token>/", serialised_callback),
    *demo_urlpatterns,
]
