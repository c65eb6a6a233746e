"""What Django's debug page may show (OUTBOUND_DEBUG=1).

Django hides settings whose names say KEY, SECRET, PASS or TOKEN, but a URL
carries its password inside: OUTBOUND_SYSTEM_MAIL_URL
(``smtp://user:pw@host``) and DATABASE_URL in the request's environment would
be shown in full. This filter also blanks the password part of any URL value,
keeping the rest, which says which server was meant."""

from __future__ import annotations

import re
from typing import Any

from django.views.debug import SafeExceptionReporterFilter

# scheme://user:password@ : the password is what lies between the first colon
# after the scheme's slashes and the last @ before the host.
_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)[^\s]*(?P<at>@)")


class ReporterFilter(SafeExceptionReporterFilter):
    hidden_settings = re.compile(
        "API|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE|HTTP_AUTHORIZATION", flags=re.IGNORECASE
    )

    def cleanse_setting(self, key: Any, value: Any) -> Any:
        cleansed = super().cleanse_setting(key, value)
        # str(): some settings are lazy objects that only pass for a str.
        if isinstance(cleansed, str) and "://" in str(cleansed):
            return hide_url_passwords(str(cleansed), self.cleansed_substitute)
        return cleansed


def hide_url_passwords(value: str, substitute: str = "********************") -> str:
    return _URL_PASSWORD.sub(lambda m: f"{m['head']}{substitute}{m['at']}", value)
