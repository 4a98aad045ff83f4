"""URLs of the REST API; include them at ``api/hidream/``::

path("api/hidream/", include("hidream_models.api.urls"))
"""

from django.urls import path
from rest_framework.routers import DefaultRouter

from .catalogue_views import PresetViewSet, TemplateViewSet
from .docs import HiDreamSchemaView, HiDreamSwaggerView
from .image_views import GeneratedImageViewSet
from .views import TaskViewSet

app_name = "hidream_api"

router = DefaultRouter()
router.register("tasks", TaskViewSet, basename="task")
router.register("images", GeneratedImageViewSet, basename="image")
router.register("templates", TemplateViewSet, basename="template")
router.register("presets", PresetViewSet, basename="preset")

api_patterns = router.urls

urlpatterns = [
    *api_patterns,
    path("schema/", HiDreamSchemaView.as_view(), name="schema"),
    path("docs/", HiDreamSwaggerView.as_view(), name="docs"),
]
