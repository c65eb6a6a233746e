"""Django EMAIL_BACKEND adapter: ``send_mail()`` and ``EmailMessage.send()``
land in the outbox instead of going straight to a server.

Set ``EMAIL_BACKEND = "outbound.mail.EmailBackend"`` (the project's default).
Each Django message becomes one Outbound message with source "django"; it is
then validated, sent, retried and explained like any other.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.core.mail import EmailMessage
from django.core.mail.backends.base import BaseEmailBackend
from django.core.mail.message import EmailMultiAlternatives
from django.db import transaction

from outbound.errors import IntakeError
from outbound.services.intake import AttachmentIn, queue_email
from outbound.states import Source


class EmailBackend(BaseEmailBackend):
    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        count = 0
        for message in email_messages:
            try:
                with transaction.atomic():
                    queue_email(**_convert(message))
            except IntakeError:
                if not self.fail_silently:
                    raise
                continue
            count += 1
        return count


def _convert(message: EmailMessage) -> dict[str, Any]:
    text, html = "", ""
    if message.content_subtype == "html":
        html = str(message.body)
    else:
        text = str(message.body)
    if isinstance(message, EmailMultiAlternatives):
        for alternative in message.alternatives:
            content, mimetype = alternative[0], alternative[1]
            if mimetype == "text/html" and not html:
                html = str(content)
    attachments = []
    for item in message.attachments:
        if isinstance(item, tuple):
            filename, content, mimetype = item[0], item[1], item[2]
            data = content.encode() if isinstance(content, str) else bytes(content)
            attachments.append(
                AttachmentIn(
                    filename=filename or "attachment",
                    content=data,
                    content_type=mimetype or "application/octet-stream",
                )
            )
        else:
            payload = item.get_payload(decode=True)
            attachments.append(
                AttachmentIn(
                    filename=item.get_filename() or "attachment",
                    content=payload if isinstance(payload, bytes) else b"",
                    content_type=item.get_content_type(),
                )
            )
    return {
        "to": list(message.to),
        "cc": list(message.cc),
        "bcc": list(message.bcc),
        "reply_to": list(message.reply_to),
        "subject": str(message.subject),
        "text": text,
        "html": html,
        "attachments": attachments,
        "headers": {str(k): str(v) for k, v in message.extra_headers.items()},
        "from_address": str(message.from_email or ""),
        "source": Source.DJANGO,
    }
