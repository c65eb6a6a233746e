"""System checks refuse what Outbound cannot run on."""

from __future__ import annotations

import sqlite3

from django.core.checks import run_checks

from outbound.checks import sqlite_problem


def test_an_sqlite_older_than_3_35_is_refused() -> None:
    error = sqlite_problem((3, 34, 1), "3.34.1")
    assert error is not None and error.id == "outbound.E001"
    assert "SQLite 3.35 or newer" in error.msg and "3.34.1" in error.msg
    assert sqlite_problem((3, 35, 0), "3.35.0") is None


def test_this_setup_passes_the_checks() -> None:
    assert sqlite3.sqlite_version_info >= (3, 35)
    assert [m.id for m in run_checks() if m.id and m.id.startswith("outbound.")] == []
