from __future__ import annotations

from django.db import models


class Suppression(models.Model):
    """A blocked address, domain (with its subdomains) or number."""

    class Kind(models.TextChoices):
        ADDRESS = "address", "Email address"
        DOMAIN = "domain", "Domain"
        NUMBER = "number", "Mobile number"

    kind = models.CharField(max_length=10, choices=Kind.choices)
    value = models.CharField(max_length=320)
    reason = models.CharField(max_length=500, blank=True)
    source = models.CharField(max_length=50, default="operator")
    created_by = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["kind", "value"]
        constraints = [models.UniqueConstraint(fields=["kind", "value"], name="unique_suppression")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.value}"
