from django.urls import path
from django.views.generic import RedirectView

app_name = "outbound"

# The operator console is built in the console issue; until then the root
# leads to the administration site, which lists messages and their history.
urlpatterns = [
    path("", RedirectView.as_view(url="/admin/outbound/message/", permanent=False), name="home"),
]
