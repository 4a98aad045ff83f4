"""The app's URLs. Include them at ``hidream/``:

path("hidream/", include("hidream_models.urls"))
"""

from django.urls import path

from .webhooks import HiDreamCallbackView

app_name = "hidream_models"

urlpatterns = [
    path(
        "callback/<uuid:task_id>/<str:token>/",
        HiDreamCallbackView.as_view(),
        name="callback",
    ),
]
