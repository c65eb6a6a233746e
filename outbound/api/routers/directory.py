"""Contacts and the blocklist."""

from __future__ import annotations

from typing import Any

from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from ninja import Field, Path, Query, Router, Status

from outbound.api.auth import (
    ADD_BLOCKS,
    ADD_CONTACTS,
    DELETE_BLOCKS,
    DELETE_CONTACTS,
    EDIT_CONTACTS,
    READ,
    UPSERT_CONTACTS,
    principal,
)
from outbound.api.errors import ApiError
from outbound.api.render import block_out, contact_out, decode_id_cursor, encode_id_cursor
from outbound.api.schemas import (
    MAX_ID,
    BlockIn,
    BlockOut,
    BlockPageOut,
    Checked,
    ContactIn,
    ContactOut,
    ContactPageOut,
    ContactUpsertIn,
    ErrorOut,
)
from outbound.models import Contact, Suppression
from outbound.services import blocklist, contacts

router = Router()

ERRORS: dict[int, Any] = {code: ErrorOut for code in (400, 401, 403, 404, 409, 413, 422, 429)}


class PageQuery(Checked):
    q: str | None = Field(None, max_length=200)
    cursor: str | None = Field(None, max_length=200)
    limit: int = Field(50, ge=1, le=200)


def _contact_or_404(contact_id: int) -> Contact:
    contact = Contact.objects.filter(pk=contact_id).first()
    if contact is None:
        raise ApiError(404, f"There is no contact {contact_id}.")
    return contact


@router.get("/contacts", response={200: ContactPageOut, **ERRORS}, auth=READ, tags=["contacts"])
def list_contacts(request: HttpRequest, query: PageQuery = Query(...)) -> dict[str, Any]:  # noqa: B008
    qs = Contact.objects.order_by("id")
    after = decode_id_cursor(query.cursor)
    if after is not None:
        qs = qs.filter(id__gt=after)
    if query.q:
        text = query.q.strip()
        qs = qs.filter(
            Q(name__icontains=text)
            | Q(email__icontains=text)
            | Q(mobile__icontains=text)
            | Q(external_id=text)
        )
    rows = list(qs[: query.limit + 1])
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    return {
        "items": [contact_out(c) for c in rows],
        "next_cursor": encode_id_cursor(rows[-1].pk) if more and rows else None,
    }


@router.post(
    "/contacts", response={201: ContactOut, **ERRORS}, auth=ADD_CONTACTS, tags=["contacts"]
)
def create_contact(request: HttpRequest, payload: ContactIn) -> Status[dict[str, Any]]:
    data = payload.model_dump(exclude_unset=True)
    contact = contacts.save_contact(data=data, actor=principal(request).actor)
    return Status(201, contact_out(contact))


ContactId = Path(..., ge=1, le=MAX_ID)


@router.get(
    "/contacts/{contact_id}", response={200: ContactOut, **ERRORS}, auth=READ, tags=["contacts"]
)
def get_contact(request: HttpRequest, contact_id: int = ContactId) -> dict[str, Any]:
    return contact_out(_contact_or_404(contact_id))


@router.patch(
    "/contacts/{contact_id}",
    response={200: ContactOut, **ERRORS},
    auth=EDIT_CONTACTS,
    tags=["contacts"],
)
def update_contact(
    request: HttpRequest, payload: ContactIn, contact_id: int = ContactId
) -> dict[str, Any]:
    contact = _contact_or_404(contact_id)
    data = payload.model_dump(exclude_unset=True)
    return contact_out(
        contacts.save_contact(contact=contact, data=data, actor=principal(request).actor)
    )


@router.put(
    "/contacts/by-external-id/{external_id}",
    response={200: ContactOut, 201: ContactOut, **ERRORS},
    auth=UPSERT_CONTACTS,
    tags=["contacts"],
    summary="Create or update the contact with this external id",
    description="201 when the contact was created, 200 when it was updated.",
)
def upsert_contact(
    request: HttpRequest,
    payload: ContactUpsertIn,
    external_id: str = Path(..., min_length=1, max_length=200),
) -> Status[dict[str, Any]]:
    data = payload.model_dump(exclude_unset=True)
    contact, created = contacts.upsert_contact(
        external_id=external_id, data=data, actor=principal(request).actor
    )
    return Status(201 if created else 200, contact_out(contact))


@router.delete(
    "/contacts/{contact_id}",
    response={204: None, **ERRORS},
    auth=DELETE_CONTACTS,
    tags=["contacts"],
)
def delete_contact(request: HttpRequest, contact_id: int = ContactId) -> HttpResponse:
    contacts.delete_contact(_contact_or_404(contact_id), actor=principal(request).actor)
    return HttpResponse(status=204)


@router.get("/blocklist", response={200: BlockPageOut, **ERRORS}, auth=READ, tags=["blocklist"])
def list_blocks(request: HttpRequest, query: PageQuery = Query(...)) -> dict[str, Any]:  # noqa: B008
    qs = Suppression.objects.order_by("id")
    after = decode_id_cursor(query.cursor)
    if after is not None:
        qs = qs.filter(id__gt=after)
    if query.q:
        qs = qs.filter(Q(value__icontains=query.q.strip()) | Q(reason__icontains=query.q.strip()))
    rows = list(qs[: query.limit + 1])
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    return {
        "items": [block_out(s) for s in rows],
        "next_cursor": encode_id_cursor(rows[-1].pk) if more and rows else None,
    }


@router.post("/blocklist", response={201: BlockOut, **ERRORS}, auth=ADD_BLOCKS, tags=["blocklist"])
def add_block(request: HttpRequest, payload: BlockIn) -> Status[dict[str, Any]]:
    entry = blocklist.add_block(
        kind=payload.kind,
        value=payload.value,
        reason=payload.reason,
        actor=principal(request).actor,
        source="api",
    )
    return Status(201, block_out(entry))


@router.delete(
    "/blocklist/{entry_id}", response={204: None, **ERRORS}, auth=DELETE_BLOCKS, tags=["blocklist"]
)
def remove_block(
    request: HttpRequest,
    entry_id: int = Path(..., ge=1, le=MAX_ID),
) -> HttpResponse:
    entry = Suppression.objects.filter(pk=entry_id).first()
    if entry is None:
        raise ApiError(404, f"There is no blocklist entry {entry_id}.")
    blocklist.remove_block(entry, actor=principal(request).actor)
    return HttpResponse(status=204)
