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
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        # Loaded here so that a bad environment variable is bad usage with
        # its own words, instead of Django's "Unknown command" for our commands.
        settings.INSTALLED_APPS  # noqa: B018 - the access loads the settings
    except ImproperlyConfigured as err:
        sys.stderr.write(f"outbound: {err}\n")
        sys.exit(2)

    try:
        execute_from_command_line(_command_name(list(argv if argv is not None else sys.argv)))
        # Written here, not at interpreter exit, so a closed pipe is caught below.
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`outbound messages list | head`): stop quietly
        # like other command-line tools, with no traceback. Output still
        # buffered would fail again at exit, so stdout now goes nowhere.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(1)
