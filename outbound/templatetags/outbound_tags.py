"""Template filters of the console."""

from __future__ import annotations

from datetime import timedelta

from django import template

register = template.Library()

_UNITS = (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1))


@register.filter
def span(value: timedelta | None) -> str:
    """A duration in words, largest units first: "15 minutes", "2 days",
    "1 hour 30 minutes" (a timedelta prints as "0:15:00", which the forms,
    asking for minutes and hours, never show)."""
    if value is None:
        return "—"
    seconds = int(value.total_seconds())
    if seconds <= 0:
        return "0 seconds"
    parts = []
    for name, size in _UNITS:
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count} {name}{'s' if count != 1 else ''}")
    return " ".join(parts)
