from __future__ import annotations

from django.db import models


class RateWindow(models.Model):
    """One caller's count of one costly API action in one fixed one-minute
    window (outbound.api.ratelimit). Kept in the database so every process
    counts against the same limit; a row is deleted once its window ended."""

    # "<action>:<caller>:<window number>", the caller as in outbound.api.auth.Principal.
    key = models.CharField(max_length=255, primary_key=True)
    count = models.PositiveIntegerField(default=0)
    # The end of the window: the row is no use after it.
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        verbose_name = "API rate window"

    def __str__(self) -> str:
        return f"{self.key}: {self.count}"
