from django.apps import AppConfig


class OutboundConfig(AppConfig):
    name = "outbound"
    verbose_name = "Outbound"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from outbound import checks  # noqa: F401  (registers the system checks)
        from outbound.web import logins  # noqa: F401  (audits failed logins)
