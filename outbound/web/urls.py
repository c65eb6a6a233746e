from django.urls import path

from outbound.web import apikeys, preview, views

app_name = "outbound"

urlpatterns = [
    path("", views.message_list, name="home"),
    path("send-outgoing/", views.send_outgoing, name="send_outgoing"),
    path("messages/<int:pk>/", views.message_detail, name="message"),
    path("messages/<int:pk>/html/", preview.message_html, name="message_html"),
    path("messages/<int:pk>/report/", views.message_report, name="message_report"),
    path("messages/<int:pk>/resend/", views.message_resend, name="message_resend"),
    path("messages/<int:pk>/cancel/", views.message_cancel, name="message_cancel"),
    path("contacts/", views.contact_list, name="contacts"),
    path("contacts/new/", views.contact_edit, name="contact_new"),
    path("contacts/<int:pk>/", views.contact_edit, name="contact"),
    path("blocklist/", views.blocklist_view, name="blocklist"),
    path("blocklist/<int:pk>/remove/", views.blocklist_remove, name="blocklist_remove"),
    path("workers/", views.workers, name="workers"),
    path("audit/", views.audit, name="audit"),
    path("settings/", views.settings_view, name="settings"),
    path("settings/api-keys/", apikeys.apikey_list, name="apikeys"),
    path("settings/api-keys/<int:pk>/revoke/", apikeys.apikey_revoke, name="apikey_revoke"),
    path("settings/global/", views.global_settings_save, name="global_settings_save"),
    path("settings/backends/new/", views.backend_save, name="backend_new"),
    path("settings/backends/<int:pk>/", views.backend_save, name="backend_save"),
    path("settings/backends/<int:pk>/test/", views.backend_test, name="backend_test"),
    path(
        "settings/backends/<int:pk>/reset-count/",
        views.backend_reset_count,
        name="backend_reset_count",
    ),
    path(
        "settings/backends/<int:pk>/test-message/",
        views.backend_test_message,
        name="backend_test_message",
    ),
]
