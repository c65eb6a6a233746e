from __future__ import annotations

import os
from typing import Any

from django.contrib.auth import get_user_model

from outbound.management.commands._keys import KeyedCommand
from outbound.models import Backend, GlobalSettings
from outbound.states import Channel

DEV_BACKEND = "Development mail catcher"
DEV_SMS_BACKEND = "Development SMS console"
# Where `make run` serves the pages (scripts/run-dev.sh).
CONSOLE_URL = "http://127.0.0.1:8000/"


class Command(KeyedCommand):
    help = "Create the development administrator and a backend pointing at the mail catcher."

    def handle(self, *args: Any, **options: Any) -> None:
        User = get_user_model()
        username = os.environ.get("OUTBOUND_ADMIN_USER", "admin")
        password = os.environ.get("OUTBOUND_ADMIN_PASSWORD", "admin")
        if not User.objects.filter(username=username).exists():
            User.objects.create_superuser(username=username, email="", password=password)
            self.stdout.write(f"Created the administrator {username!r} (password {password!r}).")
        self.stdout.write(
            f"Log in to the Outgoing messages console at {CONSOLE_URL} as {username!r} "
            "(OUTBOUND_ADMIN_USER / OUTBOUND_ADMIN_PASSWORD set them on first run)."
        )
        self.stdout.write(
            f"{CONSOLE_URL}admin/ is Django's admin: a read-only view of the raw rows, "
            "not where messages, contacts or settings are changed."
        )
        settings = GlobalSettings.load()
        if not settings.default_from:
            settings.default_from = "outbound@example.com"
            settings.save(update_fields=["default_from"])
        if not settings.backend_failure_email:
            # make run mails alerts to the catcher (scripts/run-dev.sh), so a
            # newcomer who breaks a backend sees the Backend Failure Email.
            settings.backend_failure_email = "ops@example.com"
            settings.save(update_fields=["backend_failure_email"])
            self.stdout.write(
                "Backend Failure Email set to 'ops@example.com' (alerts land in the catcher)."
            )
        if not Backend.objects.filter(channel=Channel.EMAIL, is_default=True).exists():
            Backend.objects.get_or_create(
                name=DEV_BACKEND,
                defaults={
                    "channel": Channel.EMAIL,
                    "host": "127.0.0.1",
                    "port": 1025,
                    "security": "none",
                    "from_address": "outbound@example.com",
                    "is_default": True,
                    "timeout": 10,
                },
            )
            self.stdout.write(f"Created the backend {DEV_BACKEND!r} (127.0.0.1:1025).")
        if not Backend.objects.filter(channel=Channel.SMS, is_default=True).exists():
            # Prints each SMS in the worker's output; SMS stays off in the
            # global settings until an administrator turns it on.
            Backend.objects.get_or_create(
                name=DEV_SMS_BACKEND,
                defaults={
                    "channel": Channel.SMS,
                    "kind": "console",
                    "host": "",
                    "is_default": True,
                },
            )
            self.stdout.write(f"Created the SMS backend {DEV_SMS_BACKEND!r} (prints SMS).")
