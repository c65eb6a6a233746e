"""System checks: what Outbound needs from what it runs on."""

from __future__ import annotations

import sqlite3
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, register

# The worker's statements use UPDATE ... FROM (3.33) and UPDATE ... RETURNING (3.35).
MIN_SQLITE = (3, 35, 0)


def sqlite_problem(version_info: tuple[int, ...], version: str) -> Error | None:
    """Why this SQLite library cannot serve Outbound, or None."""
    if version_info >= MIN_SQLITE:
        return None
    return Error(
        f"Outbound needs SQLite 3.35 or newer; this Python uses SQLite {version}.",
        hint="Use a Python built with a newer SQLite, or PostgreSQL (set DATABASE_URL).",
        id="outbound.E001",
    )


@register()
def sqlite_version(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    engines = {db.get("ENGINE") for db in settings.DATABASES.values()}
    if "django.db.backends.sqlite3" not in engines:
        return []
    problem = sqlite_problem(sqlite3.sqlite_version_info, sqlite3.sqlite_version)
    return [problem] if problem else []
