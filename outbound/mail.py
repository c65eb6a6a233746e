"""Django EMAIL_BACKEND adapter: ``send_mail()`` and ``EmailMessage.send()``
land in the outbox instead of going straight to a server.

Set ``EMAIL_BACKEND = "outbound.mail.EmailBackend"`` (the project's default).
Each Django message becomes one Outbound message with source "django"; it is
then validated, sent, retried and explained like any other.

What goes out is what Django's SMTP backend would send for the same
``EmailMessage``: a message with only a text and/or HTML body is stored in
those fields (and takes compose's direct path); any other structure
(attachments, inline parts, other alternatives, another ``encoding``, other
subtypes) keeps the MIME body Django itself builds, sent as built under
Outbound's headers. Header overrides (From, To, Cc, Reply-To, Date,
Message-ID) are taken as Django takes them. A message Outbound refuses is
logged with the reason, its subject and its recipients, also under
``fail_silently=True``.
"""

from __future__ import annotations

import copy
import io
import logging
from collections.abc import Sequence
from email.generator import BytesGenerator
from typing import Any

from django.conf import settings
from django.core.mail import BadHeaderError, EmailMessage
from django.core.mail.backends.base import BaseEmailBackend
from django.db import transaction

from outbound.errors import HeaderInjection, IntakeError
from outbound.services.addresses import check_email
from outbound.services.intake import queue_email
from outbound.states import Source

logger = logging.getLogger(__name__)

# Values the shell message of ``_mime_body`` carries where Django would
# otherwise look up the host name (Message-ID) or the clock (Date); both
# headers are removed with the rest of the top-level ones.
_SHELL_HEADERS = {"Message-ID": "<shell@outbound.invalid>", "Date": "Thu, 1 Jan 1970 00:00:00"}


class EmailBackend(BaseEmailBackend):
    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        count = 0
        for message in email_messages:
            try:
                fields = convert_message(message)
                with transaction.atomic():
                    queue_email(**fields)
            except (IntakeError, BadHeaderError) as err:
                # Refused before anything was stored: the outbox cannot
                # explain it, so the log must.
                logger.warning(
                    "Django mail refused, nothing queued: %s (subject %r, recipients %s)",
                    err,
                    str(message.subject),
                    ", ".join(str(r) for r in message.recipients()) or "none",
                )
                if not self.fail_silently:
                    raise
                continue
            count += 1
        return count


def convert_message(message: EmailMessage) -> dict[str, Any]:
    """The ``queue_email`` arguments for one Django message."""
    alternatives = list(getattr(message, "alternatives", []) or [])
    text, html = "", ""
    if message.content_subtype == "html":
        html = str(message.body)
    elif message.content_subtype == "plain":
        text = str(message.body)
    for alternative in alternatives:
        content, mimetype = alternative[0], alternative[1]
        if mimetype == "text/html" and not html and isinstance(content, str):
            html = content
    return {
        "to": [str(a) for a in message.to],
        "cc": [str(a) for a in message.cc],
        "bcc": [str(a) for a in message.bcc],
        "reply_to": [str(a) for a in message.reply_to],
        "subject": str(message.subject),
        "text": text,
        "html": html,
        "headers": {str(k): str(v) for k, v in message.extra_headers.items()},
        "from_address": _from_address(message),
        "mime_body": None if _is_simple(message, alternatives) else _built_body(message),
        "source": Source.DJANGO,
    }


def _from_address(message: EmailMessage) -> str:
    """The message's from address; "" (Outbound's default sender) for
    Django's default sender when that is not deliverable: Django fills in
    DEFAULT_FROM_EMAIL (``webmaster@localhost`` unless set) for
    ``from_email=None``, and ``mail_admins`` SERVER_EMAIL (``root@localhost``)."""
    raw = str(message.from_email or "")
    defaults = {str(settings.DEFAULT_FROM_EMAIL), str(settings.SERVER_EMAIL)}
    if not raw or (raw in defaults and check_email(raw).error):
        return ""
    return raw


def _is_simple(message: EmailMessage, alternatives: list[Any]) -> bool:
    """Whether the text and HTML fields say all Django would send: a text or
    HTML body in UTF-8, or a text body with one HTML alternative."""
    if message.attachments:
        return False
    if (message.encoding or settings.DEFAULT_CHARSET).lower().replace("_", "-") != "utf-8":
        return False
    if message.content_subtype not in ("plain", "html"):
        return False
    if not alternatives:
        return True
    if len(alternatives) > 1 or getattr(message, "alternative_subtype", "") != "alternative":
        return False
    content, mimetype = alternatives[0][0], alternatives[0][1]
    # Django writes an empty text part before the HTML one; the fields
    # would make an HTML-only message of it.
    return (
        mimetype == "text/html"
        and isinstance(content, str)
        and message.content_subtype == "plain"
        and bool(message.body)
    )


def _built_body(message: EmailMessage) -> bytes:
    """``_mime_body``, with what Django raises for content it cannot build
    (an unknown encoding, an attachment of the wrong type) turned into a
    refusal that is logged like the others instead of escaping
    ``fail_silently``."""
    try:
        return _mime_body(message)
    except BadHeaderError as err:
        raise HeaderInjection(f"Django refused a header of a part: {err}") from err
    except (ValueError, TypeError, LookupError) as err:
        raise IntakeError(
            f"Django could not build the message body: {type(err).__name__}: {err}"
        ) from err


def _mime_body(message: EmailMessage) -> bytes:
    """The MIME body Django builds for the message (its Content-* headers,
    a blank line, the content; CRLF lines), without its top-level headers,
    which Outbound writes.

    Django builds it from a copy stripped of addresses, subject and extra
    headers: those are Outbound's to check and write (and an address Django
    cannot parse must reach validation, not fail here)."""
    shell = copy.copy(message)
    shell.to, shell.cc, shell.bcc, shell.reply_to = [], [], [], []
    shell.from_email = "shell@outbound.invalid"
    shell.subject = ""
    shell.extra_headers = dict(_SHELL_HEADERS)
    built = shell.message()
    for name in {str(k) for k in built}:
        if not name.lower().startswith("content-"):
            del built[name]
    out = io.BytesIO()
    BytesGenerator(out, mangle_from_=False).flatten(built, linesep="\r\n")
    return out.getvalue()
