"""How a moment is written in history lines, explanations and alerts."""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone


def plural(count: int, word: str, words: str | None = None) -> str:
    """``count`` and the word in the number it takes: "1 message", "3 messages"."""
    return f"{count} {word if count == 1 else (words or word + 's')}"


def stamp(moment: datetime | None = None) -> str:
    """``moment`` (now when None) in the deployment's time zone, to the
    second, with the zone: "2026-12-06 03:51:33 UTC"."""
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M:%S %Z")
