"""The worker's hand-written statements convert values exactly as Django
does (services/prepared.py), on whichever database the suite runs."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from hypothesis import given, settings
from hypothesis import strategies as st

from outbound.models import Attempt, Event, Message
from outbound.services.prepared import prep_value

pytestmark = pytest.mark.django_db

zones = st.sampled_from(
    [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-11))]
)
moments = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=zones
)


@settings(max_examples=300, deadline=None)
@given(moments)
def test_aware_datetimes_convert_as_django_does(moment: datetime) -> None:
    fields = [(Message, "next_attempt_at"), (Attempt, "started_at"), (Event, "created_at")]
    for model, name in fields:
        field = model._meta.get_field(name)
        assert prep_value(field)(moment) == field.get_db_prep_save(moment, connection)


def test_other_datetime_values_take_djangos_own_path() -> None:
    field = Message._meta.get_field("next_attempt_at")
    convert = prep_value(field)
    assert convert(None) is None
    on_the_second = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)
    assert convert(on_the_second) == field.get_db_prep_save(on_the_second, connection)
    with pytest.warns(RuntimeWarning):
        naive = convert(datetime(2026, 11, 28, 8, 0, 0, 5))
    assert naive is not None
    day = date(2026, 11, 28)
    with pytest.warns(RuntimeWarning):
        assert convert(day) == field.get_db_prep_save(day, connection)


def test_new_instance_holds_what_the_keyword_constructor_holds() -> None:
    from outbound.models import Backend, Contact
    from outbound.services.bulk import new_instance

    contact = Contact.objects.create(name="Ann", email="ann@example.com")
    backend = Backend.objects.create(name="b", host="127.0.0.1", port=25)
    now = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)
    values = {
        "channel": "email",
        "contact": contact,
        "backend": backend,
        "to": ["ann@example.com"],
        "subject": "Hello",
        "status": "waiting",
        "created_at": now,
        "next_attempt_at": now,
        "message_id": "<x@example.com>",
    }
    fast, usual = new_instance(Message, **values), Message(**values)
    for field in Message._meta.concrete_fields:
        assert getattr(fast, field.attname) == getattr(usual, field.attname), field.name
    # The related objects given are cached, as the keyword road does.
    with CaptureQueriesContext(connection) as queries:
        assert (fast.contact, fast.backend) == (contact, backend)
    assert len(queries) == 0
    # Mutable defaults are fresh per instance.
    assert new_instance(Message).headers is not new_instance(Message).headers
    with pytest.raises(TypeError, match="no field colour"):
        new_instance(Message, colour="red")
