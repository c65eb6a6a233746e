"""Headers given to the API: Django's overrides are taken, the rest is 422
with the header named in ``details``."""

from __future__ import annotations

from typing import Any

import pytest

from outbound.models import Message
from tests.api.conftest import assert_error

pytestmark = pytest.mark.django_db


def test_the_apis_422_names_the_refused_header(api: Any) -> None:
    r = api.post(
        "/messages",
        {"to": ["ann@example.com"], "subject": "S", "headers": {"Bcc": "spy@example.com"}},
    )
    assert_error(r, 422, "invalid_input")
    assert list(r.json()["details"]) == ["headers.Bcc"]
    r = api.post(
        "/messages",
        {"to": ["ann@example.com"], "subject": "S", "headers": {"Message-ID": "<ok@example.com>"}},
    )
    assert r.status_code == 201, r.content
    assert Message.objects.get().message_id == "<ok@example.com>"


def test_a_message_id_given_twice_in_a_batch_is_422_naming_the_second(api: Any) -> None:
    one = {"to": ["ann@example.com"], "headers": {"Message-ID": "<same@example.com>"}}
    r = api.post("/messages/batch", {"messages": [one, {**one, "to": ["bob@example.com"]}]})
    assert_error(r, 422, "invalid_input")
    assert list(r.json()["details"]) == ["messages.1.headers.Message-ID"]
    assert Message.objects.count() == 0
