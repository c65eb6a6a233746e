"""Global settings: validate and save the singleton GlobalSettings.

Contract: ``save_global_settings`` takes the keys it is given (others stay as
they are), refuses the whole change with ``InvalidInput`` (an error per field,
nothing written) if any value is wrong, and writes an audit entry naming the
fields that changed. Durations are given in the units an administrator thinks
in (minutes, hours) and stored as timedeltas.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import phonenumbers
from django.db import transaction

from outbound.errors import InvalidInput
from outbound.models import GlobalSettings
from outbound.services.addresses import check_email
from outbound.services.audit import record_audit

# key -> (model field, unit, lowest, highest)
DURATIONS: dict[str, tuple[str, str, int, int]] = {
    "stuck_threshold_minutes": ("stuck_threshold", "minutes", 1, 7 * 24 * 60),
    "retry_lifetime_hours": ("retry_lifetime", "hours", 1, 30 * 24),
    "alert_reminder_interval_hours": ("alert_reminder_interval", "hours", 1, 30 * 24),
    "worker_silence_threshold_minutes": ("worker_silence_threshold", "minutes", 1, 24 * 60),
}
ADDRESSES = ("backend_failure_email", "default_from")
SMS_FIELDS = ("sms_enabled", "default_region", "max_sms_segments")
FIELDS = (*ADDRESSES, *DURATIONS, *SMS_FIELDS)
# A text of more segments than this is refused by every provider we know.
MAX_SEGMENTS = 50


def global_settings_data(settings: GlobalSettings) -> dict[str, Any]:
    """The current values in the keys ``save_global_settings`` takes."""
    data: dict[str, Any] = {key: getattr(settings, key) for key in (*ADDRESSES, *SMS_FIELDS)}
    for key, (field, unit, _, _) in DURATIONS.items():
        seconds = getattr(settings, field).total_seconds()
        data[key] = int(seconds // (60 if unit == "minutes" else 3600))
    return data


def _clean(data: dict[str, Any]) -> dict[str, Any]:
    errors: dict[str, list[str]] = {}
    unknown = set(data) - set(FIELDS)
    if unknown:
        errors["__all__"] = [f"Unknown field(s): {', '.join(sorted(unknown))}."]
    cleaned: dict[str, Any] = {}
    for key in ADDRESSES:
        if key not in data:
            continue
        raw = data[key] if data[key] is not None else ""
        if not isinstance(raw, str):
            errors[key] = ["Must be text."]
            continue
        raw = raw.strip()
        if not raw:
            # Empty is allowed: no alert address, or no global default sender.
            cleaned[key] = ""
            continue
        checked = check_email(raw)
        if checked.error:
            errors[key] = [checked.error]
        elif key == "default_from":
            # A sender keeps its display name ("Outbound <outbound@example.com>"),
            # as a backend's from address does; the envelope takes the bare address.
            cleaned[key] = raw
        else:
            # Alerts are mailed to this address: a name would only be dropped.
            cleaned[key] = checked.address
    for key, (field, unit, low, high) in DURATIONS.items():
        if key not in data:
            continue
        value = data[key]
        try:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            number = int(value)
        except (TypeError, ValueError):
            errors[key] = [f"Enter a whole number of {unit}."]
            continue
        if not low <= number <= high:
            errors[key] = [f"Must be between {low} and {high} {unit}."]
            continue
        cleaned[field] = timedelta(**{unit: number})
    if "sms_enabled" in data:
        if not isinstance(data["sms_enabled"], bool):
            errors["sms_enabled"] = ["Must be true or false."]
        else:
            cleaned["sms_enabled"] = data["sms_enabled"]
    if "default_region" in data:
        region = data["default_region"]
        if not isinstance(region, str):
            errors["default_region"] = ["Must be text."]
        elif region.strip().upper() not in phonenumbers.SUPPORTED_REGIONS:
            errors["default_region"] = [
                f"“{region}” is not a known region code; use two letters such as US, GB, FR or DE."
            ]
        else:
            cleaned["default_region"] = region.strip().upper()
    if "max_sms_segments" in data:
        value = data["max_sms_segments"]
        if isinstance(value, bool) or not isinstance(value, int | str):
            errors["max_sms_segments"] = ["Enter a whole number of segments."]
        else:
            try:
                number = int(value)
            except ValueError:
                errors["max_sms_segments"] = ["Enter a whole number of segments."]
            else:
                if not 1 <= number <= MAX_SEGMENTS:
                    errors["max_sms_segments"] = [f"Must be between 1 and {MAX_SEGMENTS}."]
                else:
                    cleaned["max_sms_segments"] = number
    if errors:
        raise InvalidInput(errors)
    return cleaned


def save_global_settings(*, data: dict[str, Any], actor: str) -> GlobalSettings:
    """Validate and save the given global settings; audit what changed."""
    cleaned = _clean(data)
    with transaction.atomic():
        GlobalSettings.load()
        settings = GlobalSettings.objects.select_for_update().get(pk=1)
        changed = sorted(k for k, v in cleaned.items() if getattr(settings, k) != v)
        for key, value in cleaned.items():
            setattr(settings, key, value)
        settings.save()
        record_audit(
            actor=actor,
            action="update_global_settings",
            object_type="globalsettings",
            object_ids=[settings.pk],
            result=f"Changed: {', '.join(changed) or 'nothing'}",
            data={"changed": changed},
        )
    return settings
