"""The bench urlconf: the demo's URLs, plus two baselines.

- ``/bench/touch/<task uuid>/``: a plain Django view that reads the body and updates one row
  (the task's ``updated_at``): the baseline of the callback view (goal 2).
- ``/bench-admin/``: an admin site with the demo's registrations (so the same navigation
  sidebar), except products, which get a plain changelist (three columns, no filters, no
  action of the app) with the task list's page size: the baseline of goal 6.
"""

from django.contrib import admin
from django.http import HttpResponseNotAllowed, JsonResponse
from django.urls import path
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from hidream_models.admin.tasks import ModelImageTaskAdmin
from hidream_models.models import ModelImageTask
from shop_demo.catalog.models import Product
from shop_demo.urls import urlpatterns as demo_urlpatterns


@csrf_exempt
def touch(request, task_id):
    """Read the body, update one row, answer JSON: the least a callback view can do."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    request.read()
    updated = ModelImageTask.objects.filter(pk=task_id).update(updated_at=timezone.now())
    return JsonResponse({"ok": bool(updated)})


class PlainProductAdmin(admin.ModelAdmin):
    list_display = ("name", "sku", "price")
    list_per_page = ModelImageTaskAdmin.list_per_page


bench_site = admin.AdminSite(name="bench_admin")
for _model, _model_admin in admin.site._registry.items():
    bench_site.register(_model, PlainProductAdmin if _model is Product else type(_model_admin))

urlpatterns = [
    path("bench/touch/<uuid:task_id>/", touch, name="bench_touch"),
    path("bench-admin/", bench_site.urls),
    *demo_urlpatterns,
]
