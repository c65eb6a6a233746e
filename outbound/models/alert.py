from __future__ import annotations

from django.db import models


class Alert(models.Model):
    """One incident told to the Backend Failure Email: opened once, reminded at
    an interval while it lasts, closed with an "all clear"."""

    class Kind(models.TextChoices):
        BACKEND_FAILING = "backend_failing", "Backend failing"
        QUEUE_STUCK = "queue_stuck", "Messages stuck"
        NO_WORKER = "no_worker", "No worker running"
        ALLOWANCE_USED = "allowance_used", "Allowance used up"

    kind = models.CharField(max_length=20, choices=Kind.choices)
    # What the incident is about ("backend:3", "queue"); one open per key.
    key = models.CharField(max_length=100)
    opened_at = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True)
    last_notified_at = models.DateTimeField(null=True, blank=True)
    notifications = models.PositiveIntegerField(default=0)
    subject = models.CharField(max_length=300)
    body = models.TextField()
    # Where the last notification went, or why it could not go.
    delivery = models.TextField(blank=True)

    class Meta:
        ordering = ["-opened_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["key"],
                condition=models.Q(closed_at__isnull=True),
                name="one_open_alert_per_key",
            )
        ]

    def __str__(self) -> str:
        return self.subject
