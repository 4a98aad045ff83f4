"""The OpenAPI schema and Swagger UI of the app's API, self-contained.

The schema covers only this app's endpoints (not the shop's other APIs), at whatever prefix
the shop included them. Swagger UI's files come from drf-spectacular-sidecar, served by the
shop itself: nothing is loaded from a CDN, whatever the project's drf-spectacular settings.
"""

from __future__ import annotations

from django.urls import include, path, reverse
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView, _get_sidecar_url

from .. import __version__
from .authentication import HiDreamAuthenticationMixin
from .schema import extend_schema

DESCRIPTION = (
    "Create HiDream model-image tasks for products or images, follow them, and review the "
    "pictures. Authenticate with a session or with `Authorization: Token <key>` "
    "(DRF's TokenAuthentication). Creating and retrying need the permission "
    "`hidream_models.generate`; approving and rejecting need `hidream_models.review`."
)


class HiDreamSchemaView(HiDreamAuthenticationMixin, SpectacularAPIView):
    """OpenAPI 3 schema of ``hidream_models.api`` only."""

    custom_settings = {
        "TITLE": "hidream-models API",
        "DESCRIPTION": DESCRIPTION,
        "VERSION": __version__,
        "COMPONENT_SPLIT_REQUEST": True,
        "ENUM_NAME_OVERRIDES": {
            "TaskStatusEnum": "hidream_models.models.TaskStatus",
            "ImageStatusEnum": "hidream_models.models.ImageStatus",
        },
    }

    @extend_schema(exclude=True)
    def get(self, request, *args, **kwargs):
        from .urls import api_patterns

        root = reverse("hidream_api:task-list").removesuffix("tasks/").lstrip("/")
        self.patterns = [path(root, include(api_patterns))]
        return super().get(request, *args, **kwargs)


class HiDreamSwaggerView(HiDreamAuthenticationMixin, SpectacularSwaggerView):
    """Swagger UI for the schema above, its assets served locally."""

    url_name = "hidream_api:schema"
    title = "hidream-models API"

    @staticmethod
    def _swagger_ui_resource(filename):
        return _get_sidecar_url(f"swagger-ui-dist/{filename}")

    @staticmethod
    def _swagger_ui_favicon():
        return _get_sidecar_url("swagger-ui-dist/favicon-32x32.png")
