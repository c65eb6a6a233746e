from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from outbound.api.health import healthz
from outbound.api.main import api

urlpatterns = [
    path("admin/", admin.site.urls),
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(template_name="outbound/login.html"),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(next_page="login"), name="logout"),
    path("api/v1/", api.urls),
    path("healthz", healthz, name="healthz"),
    path("", include("outbound.web.urls")),
]
