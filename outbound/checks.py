"""System checks: what Outbound needs from what it runs on."""

from __future__ import annotations

import sqlite3
from typing import Any

from cryptography.fernet import Fernet
from django.conf import settings
from django.core.checks import CheckMessage, Error, register
from django.core.checks import Warning as CheckWarning
from django.core.exceptions import ImproperlyConfigured

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


# The tag of the key checks; KeyedCommand runs them before it starts.
KEYS_TAG = "outbound_keys"

KEY_HINT = (
    "Make both with `outbound generate-keys` and set them in the service's environment "
    "(keep them: secrets stored under a key cannot be read without it)."
)


def key_problems(
    *, debug: bool, secret_key: str, default_secret_key: str, secret_keys: list[str]
) -> list[CheckMessage]:
    """Why the keys cannot protect this deployment, or [].

    With DEBUG off, Django's key and the keys that encrypt stored secrets must
    both be set and not the development default written in the repository:
    anyone with that constant and a copy of the database could read every
    stored password and token, or forge a session."""
    problems: list[CheckMessage] = []
    level = CheckWarning if debug else Error
    if not secret_key or secret_key == default_secret_key:
        problems.append(
            level(
                "DJANGO_SECRET_KEY is not set: Django signs sessions with the development key "
                "written in Outbound's source."
                + ("" if debug else " Outbound does not start like this with DEBUG off."),
                hint=KEY_HINT,
                id="outbound.E002" if not debug else "outbound.W002",
            )
        )
    if not secret_keys:
        problems.append(
            level(
                "OUTBOUND_SECRET_KEYS is not set: there is no key to encrypt stored passwords "
                "and tokens with."
                + ("" if debug else " Outbound does not start like this with DEBUG off."),
                hint=KEY_HINT,
                id="outbound.E003" if not debug else "outbound.W003",
            )
        )
    for key in secret_keys:
        try:
            Fernet(key.encode())
        except ValueError:
            problems.append(
                Error(
                    "OUTBOUND_SECRET_KEYS holds a value that is not a Fernet key "
                    "(32 url-safe base64-encoded bytes).",
                    hint=KEY_HINT,
                    id="outbound.E004",
                )
            )
            break
    return problems


def refuse_unsafe_keys() -> None:
    """Raise ImproperlyConfigured when a key check finds an error: for a WSGI
    server started on config.wsgi, which runs no system checks."""
    errors = [m for m in keys_are_set() if m.is_serious()]
    if errors:
        raise ImproperlyConfigured(" ".join(f"({m.id}) {m.msg} {m.hint}" for m in errors))


@register(KEYS_TAG, deploy=True)
def keys_are_set(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    from outbound import conf

    return key_problems(
        debug=bool(settings.DEBUG),
        secret_key=conf.django_secret_key(),
        default_secret_key=conf.default_secret_key(),
        secret_keys=conf.secret_keys(),
    )


# A deployment check (``manage.py check --deploy``): such mail still
# leaves, from Outbound's default sender, so every command need not say it.
@register(deploy=True)
def django_senders(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Django's default senders, when the drop-in sends Django's mail: one
    that is not deliverable (Django's own webmaster@localhost and
    root@localhost) is replaced by Outbound's default sender, which is
    worth knowing before a password reset leaves from an unexpected address."""
    if settings.EMAIL_BACKEND != "outbound.mail.EmailBackend":
        return []
    # Imported here: the address checks need the models, loaded after the checks.
    from outbound.services.addresses import check_email

    found: list[CheckMessage] = []
    for number, name in enumerate(("DEFAULT_FROM_EMAIL", "SERVER_EMAIL"), start=20):
        value = str(getattr(settings, name, ""))
        if not value:
            # Left empty on purpose: Outbound's default sender (as in
            # Outbound's own settings).
            continue
        checked = check_email(value)
        if checked.error:
            found.append(
                CheckWarning(
                    f"{name} is {value!r}, which is not a deliverable address: {checked.error}",
                    hint=(
                        "Django mail sent with it leaves from Outbound's default sender (the "
                        "default email backend's from address, else the Default from address "
                        f"of the global settings). Set {name} to choose the sender yourself."
                    ),
                    id=f"outbound.W0{number}",
                )
            )
    return found
