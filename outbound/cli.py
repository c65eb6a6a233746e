"""The `outbound` console script: Django's command line with our settings."""

from __future__ import annotations

import os
import sys


def _command_name(argv: list[str]) -> list[str]:
    # Python modules cannot have hyphens, but people type `send-outgoing`.
    if len(argv) > 1 and not argv[1].startswith("-") and "-" in argv[1]:
        argv = [argv[0], argv[1].replace("-", "_"), *argv[2:]]
    return argv


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(_command_name(list(argv if argv is not None else sys.argv)))
