"""System checks refuse what Outbound cannot run on."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest
from django.core.checks import run_checks

from outbound.checks import KEYS_TAG, sqlite_problem


def test_an_sqlite_older_than_3_35_is_refused() -> None:
    error = sqlite_problem((3, 34, 1), "3.34.1")
    assert error is not None and error.id == "outbound.E001"
    assert "SQLite 3.35 or newer" in error.msg and "3.34.1" in error.msg
    assert sqlite_problem((3, 35, 0), "3.35.0") is None


def test_this_setup_passes_the_checks() -> None:
    assert sqlite3.sqlite_version_info >= (3, 35)
    assert [m.id for m in run_checks() if m.id and m.id.startswith("outbound.")] == []


def test_no_secret_is_encrypted_with_a_key_derived_from_the_default_django_key(
    settings: Any,
) -> None:
    from outbound import secrets
    from outbound.errors import SecretError

    settings.OUTBOUND_SECRET_KEYS = ""
    settings.SECRET_KEY = settings.OUTBOUND_DEFAULT_SECRET_KEY
    with pytest.raises(SecretError, match="outbound generate-keys"):
        secrets.encrypt("hunter2")
    # A deployment's own Django key still serves as a fallback when no Fernet key is set.
    settings.SECRET_KEY = "a-deployment-key-" + "x7" * 20
    assert secrets.decrypt(secrets.encrypt("hunter2")) == "hunter2"


def test_with_debug_on_the_missing_keys_are_warnings_not_errors(settings: Any) -> None:
    def ids() -> set[str]:
        found = run_checks(tags=[KEYS_TAG], include_deployment_checks=True)
        return {m.id for m in found if m.id}

    assert ids() == set()
    settings.DEBUG = True
    settings.OUTBOUND_SECRET_KEYS = ""
    settings.SECRET_KEY = settings.OUTBOUND_DEFAULT_SECRET_KEY
    assert ids() == {"outbound.W002", "outbound.W003"}
    settings.DEBUG = False
    assert ids() == {"outbound.E002", "outbound.E003"}
    settings.OUTBOUND_SECRET_KEYS = "not-a-fernet-key"
    assert "outbound.E004" in ids()
