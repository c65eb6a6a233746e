"""Output helpers shared by the read commands: aligned tables for people,
``--json`` for scripts. (Modules starting with "_" are not commands.)"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from django.core.management.base import CommandError, OutputWrapper
from django.core.serializers.json import DjangoJSONEncoder
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from outbound.models import Contact


def write_json(out: OutputWrapper, data: Any) -> None:
    out.write(json.dumps(data, cls=DjangoJSONEncoder, indent=2, ensure_ascii=False))


def cell(value: Any, *, limit: int | None = 60) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return timezone.localtime(value).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, timedelta):
        return age(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    text = str(value).replace("\n", " ")
    return text if limit is None or len(text) <= limit else text[: limit - 3] + "..."


def age(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def write_table(out: OutputWrapper, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    out.write("  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for row in cells:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def parse_moment(raw: str | None, option: str) -> datetime | None:
    """An ISO 8601 time from an option; a time without zone is local time."""
    if not raw:
        return None
    try:
        moment = parse_datetime(raw)
    except ValueError:
        moment = None
    if moment is None:
        raise CommandError(
            f"{option}: {raw!r} is not a time; use ISO 8601, e.g. 2030-01-31T09:00:00+01:00.",
            returncode=2,
        )
    try:
        if timezone.is_naive(moment):
            moment = timezone.make_aware(moment)
        moment.astimezone(UTC)
    except (ValueError, OverflowError):
        raise CommandError(f"{option}: {raw!r} is out of range.", returncode=2) from None
    return moment


def contact_ref(ref: str | None) -> int | None:
    """The id of the contact named by ``ref`` (an id, ext:EXTERNAL_ID or an
    external id); exit code 1 when there is none."""
    if not ref:
        return None
    query = Contact.objects.all()
    if ref.startswith("ext:"):
        found = query.filter(external_id=ref[4:]).values_list("pk", flat=True).first()
    elif ref.isdigit():
        found = query.filter(pk=int(ref)).values_list("pk", flat=True).first()
    else:
        found = query.filter(external_id=ref).values_list("pk", flat=True).first()
    if found is None:
        raise CommandError(f"There is no contact {ref!r}.", returncode=1)
    return found
