"""URLs of a shop project that embeds Outbound: Django's own account views
(password reset) beside Outbound's, for tests of framework mail."""

from django.urls import include, path

from config.urls import urlpatterns as outbound_urlpatterns

urlpatterns = [path("shop/", include("django.contrib.auth.urls")), *outbound_urlpatterns]
