"""Audit trail: every operator action, from any interface, is written here."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from outbound.models import AuditEntry


def record_audit(
    *,
    actor: str,
    action: str,
    object_type: str = "",
    object_ids: Iterable[Any] = (),
    ok: bool = True,
    result: str = "",
    data: dict[str, Any] | None = None,
) -> AuditEntry:
    ids = list(object_ids)
    return AuditEntry.objects.create(
        actor=actor or "system",
        action=action,
        object_type=object_type,
        # Bulk actions can touch many rows; keep the entry readable.
        object_ids=ids[:1000],
        ok=ok,
        result=result,
        data={**(data or {}), "count": len(ids)},
    )
