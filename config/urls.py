from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView

from outbound.api.health import healthz, livez, readyz
from outbound.api.main import api
from outbound.web import hooks
from outbound.web.metrics import metrics

urlpatterns = [
    path("admin/", admin.site.urls),
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(template_name="outbound/login.html"),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(next_page="login"), name="logout"),
    path("api/v1/", api.urls),
    # Probes: liveness, readiness, and the worker view for monitoring
    # (outbound/api/health.py says which answers what).
    path("livez", livez, name="livez"),
    path("readyz", readyz, name="readyz"),
    path("healthz", healthz, name="healthz"),
    # Prometheus: loopback, or the bearer token (outbound/web/metrics.py).
    path("metrics", metrics, name="metrics"),
    # Pages that do not carry the console's icon link (the admin, the API
    # docs) make the browser ask for /favicon.ico: send it the same icon.
    path("favicon.ico", RedirectView.as_view(url=static("outbound/favicon.svg"), permanent=True)),
    path("hooks/sms/<int:backend_id>/twilio", hooks.twilio_receipt, name="twilio_receipt"),
    path("hooks/sms/<int:backend_id>/http", hooks.http_receipt, name="http_receipt"),
    path("", include("outbound.web.urls")),
]
