"""The audit page's words: each entry as a sentence an administrator reads
("Added blocklist entry anna@example.org"), with links to the objects
it names, instead of action codes and bare ids."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.urls import reverse
from django.utils.http import urlencode

from outbound.models import AuditEntry

# action -> (verb phrase, noun of one object, noun of several)
ACTIONS: dict[str, tuple[str, str, str]] = {
    "resend": ("Re-sent", "message", "messages"),
    "cancel": ("Cancelled", "message", "messages"),
    "cancel_group": ("Cancelled the group of", "message", "messages"),
    "send_outgoing": ("Sent outgoing messages now:", "message", "messages"),
    "create_contact": ("Added", "contact", "contacts"),
    "update_contact": ("Changed", "contact", "contacts"),
    "delete_contact": ("Deleted", "contact", "contacts"),
    "add_block": ("Added", "blocklist entry", "blocklist entries"),
    "remove_block": ("Removed", "blocklist entry", "blocklist entries"),
    "create_backend": ("Added", "backend", "backends"),
    "update_backend": ("Changed", "backend", "backends"),
    "test_backend": ("Tested", "backend", "backends"),
    "reset_sent_count": ("Reset the sent count of", "backend", "backends"),
    "send_test_message": ("Sent a test message through", "backend", "backends"),
    "send_test_sms": ("Sent a test SMS through", "backend", "backends"),
    "create_api_key": ("Created", "API key", "API keys"),
    "revoke_api_key": ("Revoked", "API key", "API keys"),
    "update_global_settings": ("Changed", "the global settings", "the global settings"),
}
# How many objects one line names before it says "and N more".
SHOWN = 10


@dataclass
class AuditLine:
    entry: AuditEntry
    verb: str
    noun: str
    objects: list[tuple[str, str]] = field(default_factory=list)  # (label, url or "")
    more: int = 0


def _link(object_type: str, pk: Any, names: dict[tuple[str, int], str]) -> tuple[str, str]:
    name = names.get((object_type, pk), "")
    if object_type == "message":
        return (f"{pk}", reverse("outbound:message", args=[pk]))
    if object_type == "contact":
        if name:
            return (name, reverse("outbound:contact", args=[pk]))
        return (f"{pk} (deleted)", "")
    if object_type == "backend":
        return (name or f"{pk}", f"{reverse('outbound:settings')}#backend-{pk}" if name else "")
    if object_type == "apikey":
        return (name or f"{pk}", reverse("outbound:apikeys"))
    if object_type == "suppression":
        if name:
            return (name, f"{reverse('outbound:blocklist')}?{urlencode({'q': name})}")
        return ("", "")
    return (f"{pk}", "")


def describe(entries: list[AuditEntry], names: dict[tuple[str, int], str]) -> list[AuditLine]:
    """Each entry in words; ``names`` holds the current names of the objects
    (``selectors.audit_object_names``), missing for those deleted since."""
    lines = []
    for entry in entries:
        verb, one, many = ACTIONS.get(
            entry.action, (entry.action.replace("_", " ").capitalize(), entry.object_type, "")
        )
        ids = list(entry.object_ids or [])
        total = int((entry.data or {}).get("count", len(ids)))
        line = AuditLine(entry=entry, verb=verb, noun=one if total <= 1 else (many or one))
        if entry.object_type == "globalsettings":
            line.objects = [("", f"{reverse('outbound:settings')}#global-title")]
        else:
            for pk in ids[:SHOWN]:
                label, url = _link(entry.object_type, pk, names)
                if entry.object_type == "suppression" and not label:
                    # Removed since (or this is its removal): the entry kept its words.
                    label = entry.result
                line.objects.append((label, url))
            line.more = max(total - len(line.objects), 0)
        lines.append(line)
    return lines
