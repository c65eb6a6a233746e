"""The worker's hand-written statements convert values exactly as Django
does (services/prepared.py), on whichever database the suite runs."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from django.db import connection
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
