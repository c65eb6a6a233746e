"""The blocklist: addresses, domains (with their subdomains) and numbers that
are never sent to. Entries are normalised so a lookup matches however the
address was typed."""

from __future__ import annotations

import re

from django.db import transaction

from outbound.errors import InvalidInput
from outbound.models import Suppression
from outbound.services.addresses import check_email
from outbound.services.audit import record_audit
from outbound.services.contacts import normalise_mobile
from outbound.text import sentence, text_problem

_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}$")


def normalise_entry(kind: str, value: str) -> str:
    value = (value or "").strip()
    problem = text_problem(value)
    if problem:
        raise InvalidInput({"value": [sentence("The value", problem)]})
    if kind not in Suppression.Kind.values:
        raise InvalidInput({"kind": [f"Use one of {', '.join(Suppression.Kind.values)}."]})
    if not value:
        raise InvalidInput({"value": ["A value is required."]})
    if kind == Suppression.Kind.ADDRESS:
        checked = check_email(value)
        if checked.error:
            raise InvalidInput({"value": [checked.error]})
        return checked.address.lower()
    if kind == Suppression.Kind.DOMAIN:
        domain = value.lower().lstrip("@").rstrip(".")
        try:
            ascii_domain = domain.encode("idna").decode("ascii")
        except UnicodeError as err:
            raise InvalidInput({"value": [f"“{value}” is not a domain name."]}) from err
        if not _DOMAIN.match(ascii_domain):
            raise InvalidInput({"value": [f"“{value}” is not a domain name."]})
        return domain
    number, why = normalise_mobile(value)
    if why:
        raise InvalidInput({"value": [why]})
    return number


def add_block(
    *, kind: str, value: str, reason: str = "", actor: str, source: str = "operator"
) -> Suppression:
    normalised = normalise_entry(kind, value)
    problem = text_problem(reason)
    if problem:
        raise InvalidInput({"reason": [sentence("The reason", problem)]})
    if len(reason) > 500:
        raise InvalidInput({"reason": ["At most 500 characters."]})
    if Suppression.objects.filter(kind=kind, value=normalised).exists():
        raise InvalidInput({"value": [f"{normalised} is already on the blocklist."]})
    with transaction.atomic():
        entry = Suppression.objects.create(
            kind=kind, value=normalised, reason=reason, source=source, created_by=actor
        )
        record_audit(
            actor=actor,
            action="add_block",
            object_type="suppression",
            object_ids=[entry.pk],
            result=f"{entry}",
        )
    return entry


def remove_block(entry: Suppression, *, actor: str) -> None:
    with transaction.atomic():
        text = str(entry)
        pk = entry.pk
        entry.delete()
        record_audit(
            actor=actor,
            action="remove_block",
            object_type="suppression",
            object_ids=[pk],
            result=text,
        )
