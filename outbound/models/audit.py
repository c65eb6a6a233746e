from __future__ import annotations

from django.db import models


class AuditEntry(models.Model):
    """Who did what, when, to which objects, with what result."""

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.CharField(max_length=150)
    action = models.CharField(max_length=100)
    object_type = models.CharField(max_length=50, blank=True)
    object_ids = models.JSONField(default=list, blank=True)
    ok = models.BooleanField(default=True)
    result = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return f"{self.actor} {self.action}"
