"""The message list's filters as the API and the command line take them:
the console's filters plus exact creation-time bounds."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import QuerySet

from outbound.models import Message
from outbound.selectors import MessageFilters


@dataclass(frozen=True)
class TimedMessageFilters(MessageFilters):
    created_after: datetime | None = None
    created_before: datetime | None = None

    def apply(self, qs: QuerySet[Message]) -> QuerySet[Message]:
        qs = super().apply(qs)
        if self.created_after is not None:
            qs = qs.filter(created_at__gte=self.created_after)
        if self.created_before is not None:
            qs = qs.filter(created_at__lt=self.created_before)
        return qs
