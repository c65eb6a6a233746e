from __future__ import annotations

import pytest

from outbound.models import AuditEntry, Contact, Suppression
from tests.api.conftest import assert_error

pytestmark = pytest.mark.django_db


def test_create_update_get_delete_a_contact(api):
    r = api.post("/contacts", {"name": "Ann", "email": "Ann@Example.com", "external_id": "c1"})
    assert r.status_code == 201, r.content
    contact = r.json()
    assert contact["email"] == "Ann@example.com"
    r = api.patch(f"/contacts/{contact['id']}", {"notifications_enabled": False})
    assert r.status_code == 200
    assert r.json()["notifications_enabled"] is False
    assert r.json()["name"] == "Ann"
    assert api.get(f"/contacts/{contact['id']}").json()["notifications_enabled"] is False
    assert api.delete(f"/contacts/{contact['id']}").status_code == 204
    assert_error(api.get(f"/contacts/{contact['id']}"), 404, "not_found")
    assert_error(api.delete(f"/contacts/{contact['id']}"), 404, "not_found")
    assert AuditEntry.objects.filter(action="delete_contact", actor="api key test admin").exists()


def test_contact_field_errors_are_422_per_field(api):
    body = assert_error(api.post("/contacts", {"email": "not an address", "mobile": "12"}), 422)
    assert {"email", "mobile"} <= set(body["details"])
    body = assert_error(api.post("/contacts", {"preferred_channel": "fax"}), 422)
    assert "preferred_channel" in body["details"]
    body = assert_error(api.post("/contacts", {"nickname": "x"}), 422)
    assert body["details"] == {"nickname": ["Unknown field."]}
    assert Contact.objects.count() == 0


def test_a_duplicate_external_id_is_422(api):
    api.post("/contacts", {"name": "A", "external_id": "dup"})
    body = assert_error(api.post("/contacts", {"name": "B", "external_id": "dup"}), 422)
    assert "external_id" in body["details"]


def test_upsert_by_external_id_creates_then_updates(api):
    r = api.put("/contacts/by-external-id/crm-9", {"name": "Bob", "email": "bob@example.com"})
    assert r.status_code == 201, r.content
    r2 = api.put("/contacts/by-external-id/crm-9", {"name": "Bobby"})
    assert r2.status_code == 200
    assert r2.json()["id"] == r.json()["id"]
    assert r2.json()["email"] == "bob@example.com"
    assert Contact.objects.get().name == "Bobby"
    assert_error(api.put("/contacts/by-external-id/crm-9", {"external_id": "x"}), 422)


def test_contact_list_searches_and_pages(api):
    for i in range(5):
        api.post("/contacts", {"name": f"Person {i}", "email": f"p{i}@example.com"})
    page = api.get("/contacts", limit=3).json()
    assert len(page["items"]) == 3 and page["next_cursor"]
    rest = api.get("/contacts", limit=3, cursor=page["next_cursor"]).json()
    assert len(rest["items"]) == 2 and rest["next_cursor"] is None
    assert [c["name"] for c in api.get("/contacts", q="p3@").json()["items"]] == ["Person 3"]
    assert_error(api.get("/contacts", cursor="!!"), 400, "invalid_cursor")


def test_blocklist_add_list_remove(api):
    r = api.post("/blocklist", {"kind": "domain", "value": "Spam.Example", "reason": "abuse"})
    assert r.status_code == 201, r.content
    entry = r.json()
    assert entry["value"] == "spam.example"
    assert entry["source"] == "api"
    assert [e["id"] for e in api.get("/blocklist").json()["items"]] == [entry["id"]]
    assert_error(api.post("/blocklist", {"kind": "domain", "value": "spam.example"}), 422)
    assert api.delete(f"/blocklist/{entry['id']}").status_code == 204
    assert_error(api.delete(f"/blocklist/{entry['id']}"), 404)
    assert Suppression.objects.count() == 0


def test_blocklist_input_errors(api):
    body = assert_error(api.post("/blocklist", {"kind": "ip", "value": "1.2.3.4"}), 422)
    assert "kind" in body["details"]
    body = assert_error(api.post("/blocklist", {"kind": "address", "value": "nope"}), 422)
    assert "value" in body["details"]


def test_a_read_key_cannot_change_the_directory(api_as):
    reader = api_as("read")
    assert reader.get("/contacts").status_code == 200
    assert reader.get("/blocklist").status_code == 200
    assert_error(reader.post("/contacts", {"name": "x"}), 403)
    assert_error(reader.post("/blocklist", {"kind": "domain", "value": "a.example"}), 403)
