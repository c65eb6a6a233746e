from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from outbound.errors import InvalidInput, NotFound
from outbound.management.commands._output import parse_moment, write_json, write_table
from outbound.models import ApiKey
from outbound.services.apikeys import create_api_key, find_api_key, revoke_api_key


class Command(BaseCommand):
    help = "Create, list or revoke API keys."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True, metavar="create|list|revoke")
        create = sub.add_parser("create", help="Create a key; it is printed this once.")
        create.add_argument("name")
        create.add_argument("--scope", choices=ApiKey.Scope.values, default="read")
        create.add_argument("--expires", help="Expiry: a number of days, or an ISO 8601 time.")
        create.add_argument("--json", action="store_true")
        listing = sub.add_parser("list", help="Keys (never their secret).")
        listing.add_argument("--json", action="store_true")
        revoke = sub.add_parser("revoke", help="Revoke a key by its prefix.")
        revoke.add_argument("prefix")

    def handle(self, *args: Any, **options: Any) -> None:
        getattr(self, f"_{options['action']}")(options)

    def _create(self, options: dict[str, Any]) -> None:
        expires = None
        raw = options["expires"]
        if raw:
            expires = (
                timezone.now() + timedelta(days=int(raw))
                if raw.isdigit()
                else parse_moment(raw, "--expires")
            )
        try:
            key, plaintext = create_api_key(
                name=options["name"], scope=options["scope"], actor="cli", expires_at=expires
            )
        except InvalidInput as err:
            raise CommandError(str(err), returncode=1) from err
        if options["json"]:
            write_json(
                self.stdout,
                {
                    "key": plaintext,
                    "prefix": key.prefix,
                    "name": key.name,
                    "scope": key.scope,
                    "expires_at": key.expires_at,
                },
            )
            return
        self.stdout.write(plaintext)
        self.stderr.write(
            f"API key {key.prefix} ({key.scope}) created for {key.name!r}. "
            "Store it now: it cannot be shown again."
        )

    def _list(self, options: dict[str, Any]) -> None:
        keys = list(ApiKey.objects.all())
        rows = [
            {
                "prefix": k.prefix,
                "name": k.name,
                "scope": k.scope,
                "created_at": k.created_at,
                "created_by": k.created_by,
                "last_used_at": k.last_used_at,
                "expires_at": k.expires_at,
                "revoked_at": k.revoked_at,
            }
            for k in keys
        ]
        if options["json"]:
            write_json(self.stdout, rows)
            return
        write_table(
            self.stdout,
            ["prefix", "name", "scope", "created", "last used", "expires", "revoked"],
            [
                [
                    r["prefix"],
                    r["name"],
                    r["scope"],
                    r["created_at"],
                    r["last_used_at"],
                    r["expires_at"],
                    r["revoked_at"],
                ]
                for r in rows
            ],
        )

    def _revoke(self, options: dict[str, Any]) -> None:
        try:
            key = find_api_key(options["prefix"])
        except NotFound as err:
            raise CommandError(str(err), returncode=1) from err
        if not revoke_api_key(key, actor="cli"):
            raise CommandError(f"The API key {key.prefix} was already revoked.", returncode=1)
        self.stdout.write(f"API key {key.prefix} ({key.name}) revoked.")
