from __future__ import annotations

from datetime import timedelta

from django.db import models


class GlobalSettings(models.Model):
    """The platform's global notification settings (a single row)."""

    backend_failure_email = models.CharField(max_length=320, blank=True)
    default_from = models.CharField(max_length=320, blank=True)
    stuck_threshold = models.DurationField(default=timedelta(minutes=15))
    retry_lifetime = models.DurationField(default=timedelta(days=2))
    retry_min_backoff = models.DurationField(default=timedelta(seconds=30))
    retry_max_backoff = models.DurationField(default=timedelta(hours=1))
    alert_reminder_interval = models.DurationField(default=timedelta(hours=4))
    worker_silence_threshold = models.DurationField(default=timedelta(minutes=5))
    sms_enabled = models.BooleanField(default=False)
    default_region = models.CharField(max_length=2, default="US")
    max_sms_segments = models.PositiveIntegerField(default=10)
    retention_days = models.PositiveIntegerField(default=365)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "global settings"
        verbose_name_plural = "global settings"

    def __str__(self) -> str:
        return "Global settings"

    @classmethod
    def load(cls) -> GlobalSettings:
        obj, _ = cls.objects.get_or_create(pk=1)
        return obj
