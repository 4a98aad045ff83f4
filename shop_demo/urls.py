"""URLs of the demo shop: the admin, the app's callback and REST API, media while DEBUG."""

import re

from django.conf import settings
from django.contrib import admin
from django.urls import include, path, re_path
from django.views.static import serve

urlpatterns = [
    path("admin/", admin.site.urls),
    path("hidream/", include("hidream_models.urls")),
    path("api/hidream/", include("hidream_models.api.urls")),
    path("i18n/", include("django.conf.urls.i18n")),
    path("", include("shop_demo.catalog.urls")),
]


def serve_media(request, path):
    """Media files while DEBUG, as ``static()`` would serve them, but from the MEDIA_ROOT of
    the moment (tests move it). The type comes from the stored name's extension, and
    SecurityMiddleware adds ``X-Content-Type-Options: nosniff``."""
    return serve(request, path, document_root=settings.MEDIA_ROOT)


if settings.DEBUG and settings.MEDIA_URL.startswith("/"):
    urlpatterns += [
        re_path(rf"^{re.escape(settings.MEDIA_URL.strip('/'))}/(?P<path>.*)$", serve_media)
    ]
