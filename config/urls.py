from django.contrib import admin
from django.urls import include, path

from outbound.api.health import healthz
from outbound.api.main import api

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", api.urls),
    path("healthz", healthz, name="healthz"),
    path("", include("outbound.web.urls")),
]
