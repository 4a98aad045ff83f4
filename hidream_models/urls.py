"""The app's URLs. Include them at ``hidream/``:

path("hidream/", include("hidream_models.urls"))
"""

from django.urls import path

from .webhooks import HiDreamCallbackView

app_name = "hidream_models"

callback_view = HiDreamCallbackView.as_view()

urlpatterns = [
    path("callback/<uuid:task_id>/<str:token>/", callback_view, name="callback"),
    # The same without the slash. Otherwise CommonMiddleware (APPEND_SLASH) answers a POST
    # to it with a redirect, or when DEBUG with a RuntimeError: a 500 whose log line holds
    # the path and its token.
    path("callback/<uuid:task_id>/<str:token>", callback_view),
]
