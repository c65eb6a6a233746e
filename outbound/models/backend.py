from __future__ import annotations

from django.db import models

from outbound.states import Channel

# Fields whose change makes a backend untested: anything that decides where
# and how we connect, or who we say we are.
CONNECTION_FIELDS = (
    "kind",
    "host",
    "port",
    "security",
    "username",
    "secret",
    "from_address",
    "timeout",
    "options",
)


class BackendKind(models.TextChoices):
    SMTP = "smtp", "SMTP server"
    TWILIO = "twilio", "Twilio"
    HTTP = "http", "HTTP gateway"
    CONSOLE = "console", "Console"
    LOCMEM = "locmem", "In memory"


class Security(models.TextChoices):
    NONE = "none", "None"
    STARTTLS = "starttls", "STARTTLS"
    TLS = "tls", "Implicit TLS"


class Health(models.TextChoices):
    UNTESTED = "untested", "Not tested"
    OK = "ok", "OK"
    FAILING = "failing", "Failing"


class Backend(models.Model):
    """A configured provider for one channel: an SMTP server, an SMS gateway."""

    name = models.CharField(max_length=100, unique=True)
    channel = models.CharField(max_length=10, choices=Channel.choices, default=Channel.EMAIL)
    kind = models.CharField(max_length=20, choices=BackendKind.choices, default=BackendKind.SMTP)
    is_default = models.BooleanField(default=False)
    host = models.CharField(max_length=255, blank=True)
    port = models.PositiveIntegerField(default=587)
    security = models.CharField(max_length=10, choices=Security.choices, default=Security.STARTTLS)
    username = models.CharField(max_length=255, blank=True)
    # Encrypted with outbound.secrets; never the clear value.
    secret = models.TextField(blank=True, default="")
    # SMS gateways: the shared secret a gateway's delivery receipts must carry;
    # encrypted like ``secret``.
    receipt_secret = models.TextField(blank=True, default="")
    from_address = models.CharField(max_length=320, blank=True)
    timeout = models.FloatField(default=30.0)
    options = models.JSONField(default=dict, blank=True)

    settings_version = models.PositiveIntegerField(default=1)
    tested_version = models.PositiveIntegerField(null=True, blank=True)
    health = models.CharField(max_length=10, choices=Health.choices, default=Health.UNTESTED)
    health_reason = models.CharField(max_length=50, blank=True)
    health_detail = models.TextField(blank=True)
    health_changed_at = models.DateTimeField(null=True, blank=True)
    last_test_at = models.DateTimeField(null=True, blank=True)
    last_test_result = models.JSONField(default=dict, blank=True)

    limit = models.PositiveIntegerField(null=True, blank=True)
    sent_count = models.PositiveIntegerField(default=0)
    rate_per_minute = models.PositiveIntegerField(null=True, blank=True)
    max_connections = models.PositiveIntegerField(null=True, blank=True)
    # Set when the relay throttles us (421/451 repeatedly): nothing is claimed
    # for this backend before this time.
    paused_until = models.DateTimeField(null=True, blank=True)
    # 421/451 replies in a row; a pause starts at three.
    throttle_strikes = models.PositiveIntegerField(default=0)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["channel", "-is_default", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["channel"],
                condition=models.Q(is_default=True),
                name="one_default_backend_per_channel",
            )
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def security_words(self) -> str:
        """The security setting in words, for a sentence ("security None" read
        as a fact about the connection)."""
        words: dict[str, str] = {
            Security.NONE: "unencrypted (no TLS)",
            Security.STARTTLS: "encrypted with STARTTLS",
            Security.TLS: "encrypted with TLS from the start",
        }
        return words.get(self.security, self.security)

    @property
    def is_usable(self) -> bool:
        """Tested successfully on its current settings."""
        return self.health == Health.OK and self.tested_version == self.settings_version

    @property
    def left(self) -> int | None:
        if self.limit is None:
            return None
        return max(self.limit - self.sent_count, 0)

    @property
    def has_secret(self) -> bool:
        return bool(self.secret)


class BackendSlot(models.Model):
    """One open connection to a backend with a connection cap, held by a worker
    thread under a lease so a killed worker's slots free themselves."""

    backend = models.ForeignKey(Backend, on_delete=models.CASCADE, related_name="slots")
    holder = models.CharField(max_length=250)
    lease_until = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["backend", "lease_until"], name="slot_backend_lease")]

    def __str__(self) -> str:
        return f"{self.backend} held by {self.holder}"
