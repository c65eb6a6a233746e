"""What a client generated from /api/v1/openapi.json is built from: stable
operation names, enums for status and channel, and field-named refusals."""

from __future__ import annotations

import re
from typing import Any

import pytest

from outbound.models import Message
from outbound.states import Channel, Status
from tests.api.conftest import assert_error

pytestmark = pytest.mark.django_db

# The operationIds are the names of a generated client's functions: this
# list changes only when the API does.
OPERATION_IDS = {
    ("post", "/api/v1/messages"): "create_message",
    ("get", "/api/v1/messages"): "list_messages",
    ("post", "/api/v1/messages/batch"): "create_messages",
    ("get", "/api/v1/messages/{message_id}"): "get_message",
    ("post", "/api/v1/messages/{message_id}/resend"): "resend_message",
    ("post", "/api/v1/messages/{message_id}/cancel"): "cancel_message",
    ("post", "/api/v1/groups/{group_key}/cancel"): "cancel_group",
    ("post", "/api/v1/send-outgoing"): "send_outgoing",
    ("get", "/api/v1/contacts"): "list_contacts",
    ("post", "/api/v1/contacts"): "create_contact",
    ("get", "/api/v1/contacts/{contact_id}"): "get_contact",
    ("patch", "/api/v1/contacts/{contact_id}"): "update_contact",
    ("delete", "/api/v1/contacts/{contact_id}"): "delete_contact",
    ("put", "/api/v1/contacts/by-external-id/{external_id}"): "upsert_contact",
    ("get", "/api/v1/blocklist"): "list_blocks",
    ("post", "/api/v1/blocklist"): "add_block",
    ("delete", "/api/v1/blocklist/{entry_id}"): "remove_block",
    ("get", "/api/v1/backends"): "list_backends",
    ("post", "/api/v1/backends"): "create_backend",
    ("get", "/api/v1/backends/{backend_id}"): "get_backend",
    ("patch", "/api/v1/backends/{backend_id}"): "update_backend",
    ("post", "/api/v1/backends/{backend_id}/test"): "run_backend_test",
    ("get", "/api/v1/settings"): "get_settings",
    ("patch", "/api/v1/settings"): "update_settings",
    ("get", "/api/v1/overview"): "get_overview",
    ("get", "/api/v1/healthz"): "get_health",
}
VERBS = {"create", "list", "get", "update", "upsert", "delete", "add", "remove"}
VERBS |= {"resend", "cancel", "send", "run"}


def _schema(anon: Any) -> dict[str, Any]:
    r = anon.client.get("/api/v1/openapi.json")
    assert r.status_code == 200
    schema: dict[str, Any] = r.json()
    return schema


def _operations(schema: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method, path): op for path, ops in schema["paths"].items() for method, op in ops.items()
    }


def test_every_operation_id_is_a_unique_snake_case_verb_name(anon: Any) -> None:
    operations = _operations(_schema(anon))
    ids = [op["operationId"] for op in operations.values()]
    assert len(ids) == len(set(ids)), sorted(ids)
    for name in ids:
        assert re.fullmatch(r"[a-z]+(_[a-z]+)*", name), name
        assert name.split("_")[0] in VERBS, name
        # The default of django-ninja was the module path joined to the name.
        assert "outbound" not in name and "routers" not in name, name
    assert {key: op["operationId"] for key, op in operations.items()} == OPERATION_IDS


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[1]
        resolved: dict[str, Any] = schema["components"]["schemas"][name]
        return resolved
    return node


def _enum(schema: dict[str, Any], node: dict[str, Any]) -> set[str]:
    """The values an enum property takes, through refs and anyOf (null and
    the empty string of an event that moved no status are kept)."""
    node = _resolve(schema, node)
    if "enum" in node:
        return set(node["enum"])
    if "const" in node:
        return {node["const"]}
    assert "anyOf" in node, node
    values: set[str] = set()
    for part in node["anyOf"]:
        if part.get("type") != "null":
            values |= _enum(schema, part)
    return values


@pytest.mark.parametrize(
    ("component", "field", "values"),
    [
        ("MessageOut", "status", set(Status.values)),
        ("MessageOut", "channel", set(Channel.values)),
        ("ExplanationOut", "status", set(Status.values)),
        ("EventOut", "from_status", {*Status.values, ""}),
        ("EventOut", "to_status", {*Status.values, ""}),
        ("ContactOut", "preferred_channel", set(Channel.values)),
        ("BackendOut", "channel", set(Channel.values)),
        ("OverviewBackendOut", "channel", set(Channel.values)),
    ],
)
def test_status_and_channel_in_answers_are_enums_of_the_models_values(
    anon: Any, component: str, field: str, values: set[str]
) -> None:
    schema = _schema(anon)
    prop = schema["components"]["schemas"][component]["properties"][field]
    assert _enum(schema, prop) == values


def test_the_message_lists_query_takes_the_same_enums(anon: Any) -> None:
    schema = _schema(anon)
    params = {p["name"]: p for p in schema["paths"]["/api/v1/messages"]["get"]["parameters"]}
    assert _enum(schema, params["status"]["schema"]) == set(Status.values)
    assert _enum(schema, params["channel"]["schema"]) == set(Channel.values)


@pytest.mark.parametrize(
    ("headers", "field"),
    [
        ({"X-Ticket": "v" * 999}, "headers.X-Ticket"),
        ({"X-" + "n" * 99: "1"}, "headers.X-" + "n" * 99),
    ],
)
def test_a_header_over_its_limit_is_422_naming_the_header(
    api: Any, headers: dict[str, str], field: str
) -> None:
    r = api.post("/messages", {"to": ["ann@example.com"], "subject": "S", "headers": headers})
    details = assert_error(r, 422, "invalid_input")["details"]
    assert details and all(name.startswith(field) for name in details), details
    assert Message.objects.count() == 0
