from __future__ import annotations

from django.db import models

from outbound.states import Channel


class Contact(models.Model):
    """A person the platform writes to (the platform calls it a target)."""

    name = models.CharField(max_length=200, blank=True)
    email = models.CharField(max_length=320, blank=True)
    mobile = models.CharField(max_length=40, blank=True)
    preferred_channel = models.CharField(
        max_length=10, choices=Channel.choices, default=Channel.EMAIL
    )
    notifications_enabled = models.BooleanField(default=True)
    active = models.BooleanField(default=True)
    external_id = models.CharField(max_length=200, unique=True, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "id"]
        indexes = [models.Index(fields=["email"]), models.Index(fields=["mobile"])]

    def __str__(self) -> str:
        return self.name or self.email or self.mobile or f"Contact {self.pk}"
