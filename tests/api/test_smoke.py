from tests.api.conftest import assert_error


def test_create_and_list(api):
    r = api.post("/messages", {"to": ["a@example.com"], "subject": "Hi", "text": "x"})
    assert r.status_code == 201, r.content
    r2 = api.get("/messages")
    assert r2.status_code == 200, r2.content
    assert r2.json()["items"][0]["id"] == r.json()["id"]
    r3 = api.get(f"/messages/{r.json()['id']}")
    assert r3.status_code == 200, r3.content


def test_no_key(anon):
    assert_error(anon.get("/messages"), 401, "unauthenticated")
