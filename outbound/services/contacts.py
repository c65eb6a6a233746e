"""Contacts: create, edit, upsert by external id, delete.

Contract: every write validates the whole input first and raises
``InvalidInput`` with one message per field before anything is written. An
email address is checked with email-validator; a mobile number is parsed with
phonenumbers against the default region and stored in E.164.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from outbound.errors import InvalidInput
from outbound.models import Contact, GlobalSettings
from outbound.services.addresses import check_email, check_mobile
from outbound.services.audit import record_audit
from outbound.states import Channel
from outbound.text import header_problem, sentence, text_problem

FIELDS = (
    "name",
    "email",
    "mobile",
    "preferred_channel",
    "notifications_enabled",
    "active",
    "external_id",
)


def normalise_mobile(raw: str, *, region: str | None = None) -> tuple[str, str]:
    """(E.164 number, "") or ("", why it is not usable); "" gives ("", "")."""
    if not raw.strip():
        return "", ""
    return check_mobile(raw, region=region or GlobalSettings.load().default_region)


def clean_contact_data(data: dict[str, Any], *, partial: bool = False) -> dict[str, Any]:
    """Validate contact fields; return the cleaned values or raise InvalidInput."""
    errors: dict[str, list[str]] = {}
    unknown = set(data) - set(FIELDS)
    if unknown:
        errors["__all__"] = [f"Unknown field(s): {', '.join(sorted(unknown))}."]
    cleaned: dict[str, Any] = {}
    for key in ("name", "email", "mobile", "external_id"):
        if key in data:
            value = data[key]
            if value is None:
                value = ""
            if not isinstance(value, str):
                errors[key] = ["Must be text."]
                continue
            # The name becomes the display name in the To header of every
            # email to the contact: no line breaks or control characters.
            problem = header_problem(value) if key == "name" else text_problem(value)
            if problem:
                errors[key] = [sentence("The text", problem)]
                continue
            cleaned[key] = value.strip()
    if len(cleaned.get("name", "")) > 200:
        errors["name"] = ["At most 200 characters."]
    if cleaned.get("email"):
        checked = check_email(cleaned["email"])
        if checked.error:
            errors["email"] = [checked.error]
        else:
            cleaned["email"] = checked.address
    if cleaned.get("mobile"):
        number, why = normalise_mobile(cleaned["mobile"])
        if why:
            errors["mobile"] = [why]
        else:
            cleaned["mobile"] = number
    if "external_id" in cleaned:
        if len(cleaned["external_id"]) > 200:
            errors["external_id"] = ["At most 200 characters."]
        cleaned["external_id"] = cleaned["external_id"] or None
    if "preferred_channel" in data:
        if data["preferred_channel"] not in Channel.values:
            errors["preferred_channel"] = [f"Use one of {', '.join(Channel.values)}."]
        else:
            cleaned["preferred_channel"] = data["preferred_channel"]
    for key in ("notifications_enabled", "active"):
        if key in data:
            if not isinstance(data[key], bool):
                errors[key] = ["Must be true or false."]
            else:
                cleaned[key] = data[key]
    if errors:
        raise InvalidInput(errors)
    return cleaned


def save_contact(*, contact: Contact | None = None, data: dict[str, Any], actor: str) -> Contact:
    """Create (contact=None) or update a contact from ``data``."""
    cleaned = clean_contact_data(data, partial=contact is not None)
    ext = cleaned.get("external_id")
    if ext:
        clash = Contact.objects.filter(external_id=ext)
        if contact is not None:
            clash = clash.exclude(pk=contact.pk)
        if clash.exists():
            raise InvalidInput({"external_id": [f"Another contact has external id {ext}."]})
    with transaction.atomic():
        created = contact is None
        target = contact or Contact()
        # The audit of an update names only what changed: a form posts every
        # field, and "name, email, mobile, ..." each time says nothing.
        changed = sorted(
            key
            for key, value in cleaned.items()
            if (created and value not in ("", None))
            or (not created and getattr(target, key) != value)
        )
        for key, value in cleaned.items():
            setattr(target, key, value)
        target.save()
        if created:
            result = f"Added with {', '.join(changed)}" if changed else "Added"
        else:
            result = f"Changed: {', '.join(changed)}" if changed else "Nothing changed"
        record_audit(
            actor=actor,
            action="create_contact" if created else "update_contact",
            object_type="contact",
            object_ids=[target.pk],
            result=result,
            data={"fields": changed},
        )
    return target


def upsert_contact(*, external_id: str, data: dict[str, Any], actor: str) -> tuple[Contact, bool]:
    """Create or update the contact with ``external_id``; (contact, created)."""
    if not external_id or not external_id.strip():
        raise InvalidInput({"external_id": ["An external id is required."]})
    problem = text_problem(external_id)
    if problem:
        raise InvalidInput({"external_id": [sentence("The external id", problem)]})
    data = {**data, "external_id": external_id.strip()}
    existing = Contact.objects.filter(external_id=external_id.strip()).first()
    return save_contact(contact=existing, data=data, actor=actor), existing is None


def delete_contact(contact: Contact, *, actor: str) -> None:
    pk = contact.pk
    with transaction.atomic():
        contact.delete()
        record_audit(actor=actor, action="delete_contact", object_type="contact", object_ids=[pk])
