"""The URLs of the README's "Add it to your shop", for ``bare_settings``."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("hidream/", include("hidream_models.urls")),
    path("api/hidream/", include("hidream_models.api.urls")),
]
