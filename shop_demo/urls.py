"""URLs of the demo shop: the admin, the app's callback and REST API, media while DEBUG."""

from django.conf import settings
from django.conf.urls.static import static
from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("hidream/", include("hidream_models.urls")),
    path("api/hidream/", include("hidream_models.api.urls")),
    path("i18n/", include("django.conf.urls.i18n")),
    path("", include("shop_demo.catalog.urls")),
]
if settings.DEBUG:
    urlpatterns += static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT)
