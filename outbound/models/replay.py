from __future__ import annotations

from django.db import models


class ApiReplay(models.Model):
    """The first successful answer to an API request that carried an
    ``Idempotency-Key``, kept so a retry of the same request gets that answer
    again, whatever happened to the message since. Keys are scoped to the
    caller (an API key or a console user): two clients may pick the same key."""

    # "key:<api key id>" or "user:<username>", as in outbound.api.auth.Principal.
    owner = models.CharField(max_length=200)
    idempotency_key = models.CharField(max_length=255)
    # The operation and the canonical request body: a reuse with anything else is a conflict.
    method = models.CharField(max_length=10)
    path = models.CharField(max_length=300)
    request_hash = models.CharField(max_length=64)
    status_code = models.PositiveSmallIntegerField()
    body = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "idempotency_key"], name="api_replay_owner_key"
            )
        ]
        verbose_name = "API replay"

    def __str__(self) -> str:
        return f"{self.method} {self.path} [{self.idempotency_key}] by {self.owner}"
