"""Backends: build a transport from stored settings, test them, track health,
hold and release messages.

Contract: a backend is usable only when a test succeeded on its current
settings version. ``test_backend`` runs the probe and, on success, releases
every message held as Backend test required for it back to Waiting.
``mark_backend_failing`` records a configuration failure seen while sending
and holds the backend's queued messages; it changes nothing if the settings
were edited since the failing attempt (the new settings await their own test).
``save_backend_settings`` keeps one default backend per channel once there is
one, and a tested backend that becomes the default releases, through the same
``release_held``, the held messages that follow the channel's default (those
not named to a backend at intake), whichever backend held them before.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from dataclasses import asdict, dataclass
from email import policy as email_policy
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

import idna
from django.db import transaction
from django.utils import timezone

from outbound import conf, secrets
from outbound.errors import InvalidInput, TransportError
from outbound.formats import plural
from outbound.models import Backend, GlobalSettings, Health, Message, Security, Suppression
from outbound.models.backend import CONNECTION_FIELDS
from outbound.selectors import held_for
from outbound.services import alerts, sms_backends, transitions
from outbound.services.addresses import check_email, check_mobile, find_blocks, find_number_blocks
from outbound.services.audit import record_audit
from outbound.services.intake import make_message_id, sms_message_id
from outbound.states import Channel, Reason, Status
from outbound.transports.base import Envelope
from outbound.transports.sms_base import SmsEnvelope
from outbound.transports.smtp import ProbeResult, SmtpConfig, SmtpTransport

logger = logging.getLogger(__name__)

PROBE_RECIPIENT = "postmaster@example.com"

# Transport reason -> the message reason used when holding messages.
CONFIG_REASONS = {
    "auth_failed": Reason.BACKEND_AUTH_FAILED,
    "auth_unsupported": Reason.BACKEND_AUTH_FAILED,
    "tls_failed": Reason.BACKEND_TLS_FAILED,
    "tls_wrong_host": Reason.BACKEND_TLS_FAILED,
    "host_not_found": Reason.BACKEND_HOST_NOT_FOUND,
    "secret_unreadable": Reason.BACKEND_SECRET_UNREADABLE,
    "host_forbidden": Reason.BACKEND_HOST_FORBIDDEN,
}


def smtp_config(backend: Backend) -> SmtpConfig:
    """The transport settings of ``backend``; raises SecretError if its password
    cannot be decrypted."""
    password = secrets.decrypt(backend.secret, owner=f"backend {backend.name}")
    return SmtpConfig(
        host=backend.host,
        port=backend.port,
        security=backend.security,  # type: ignore[arg-type]
        username=backend.username,
        password=password,
        timeout=backend.timeout,
        ssl_context=conf.ssl_context() if backend.security != "none" else None,
        address_allowed=conf.host_policy(),
    )


def release_held(
    backend: Backend, *, actor: str = "system", became_default: bool = False
) -> list[int]:
    """Send messages held as Backend test required back to Waiting.

    After a successful test of ``backend``, or when a tested and working
    ``backend`` has just become its channel's default (``became_default``):
    every message whose hold it decides (``held_for``). Messages named to
    another backend at intake wait for that one.
    """
    now = timezone.now()
    at = now.isoformat(timespec="seconds")
    held = held_for(backend)
    if became_default:
        text = (
            f"Backend {backend.name}, whose settings passed the test, became the default "
            f"{_channel_noun(backend.channel)} backend at {at}; the message is released to "
            "be sent through it."
        )
    else:
        text = (
            f"The test of backend {backend.name} succeeded at {at}; the message is released "
            "to be sent."
        )
    with transaction.atomic():
        ids = list(
            Message.objects.filter(held, status=Status.BACKEND_TEST_REQUIRED)
            .order_by("id")
            .values_list("id", flat=True)
        )
        if not ids:
            return []
        return transitions.transition_where(
            filters={"pk__in": ids},
            to=Status.WAITING,
            reason=Reason.RELEASED,
            text=text,
            expect=[Status.BACKEND_TEST_REQUIRED],
            fields={"next_attempt_at": now},
            actor=actor,
        )


def hold_queued(backend: Backend, *, reason: str, text: str) -> list[int]:
    """Move the backend's unclaimed To send messages to Backend test required.

    Claimed ones are left to the worker holding them: it knows whether its
    send went through, and its fenced write decides.
    """
    return transitions.transition_where(
        filters={"backend": backend, "claim_token__isnull": True},
        to=Status.BACKEND_TEST_REQUIRED,
        reason=reason,
        text=text,
        expect=[Status.TO_SEND],
        fields={"next_attempt_at": None},
    )


def mark_backend_failing(
    backend_id: int, *, settings_version: int, reason: str, detail: str
) -> bool:
    """Record a configuration failure seen while sending; True if it was news."""
    now = timezone.now()
    changed = (
        Backend.objects.filter(pk=backend_id, settings_version=settings_version)
        .exclude(health=Health.FAILING, health_reason=reason)
        .update(
            health=Health.FAILING, health_reason=reason, health_detail=detail, health_changed_at=now
        )
    )
    backend = Backend.objects.get(pk=backend_id)
    if backend.settings_version == settings_version:
        hold_queued(
            backend,
            reason=CONFIG_REASONS.get(reason, Reason.BACKEND_FAILING),
            text=f"Backend {backend.name} is failing: {detail}",
        )
    if changed:
        logger.warning("backend %s failing: %s", backend.name, reason)
        alerts.backend_failing(Backend.objects.get(pk=backend_id))
    return bool(changed)


def test_backend(
    backend: Backend,
    *,
    actor: str = "system",
    deadline: float = 15.0,
    probe_recipient: str = PROBE_RECIPIENT,
) -> ProbeResult:
    """Run the backend test on the current settings and record its result."""
    version = backend.settings_version
    try:
        if backend.channel == Channel.SMS:
            result = sms_backends.sms_transport(backend).probe(deadline=deadline)
        else:
            result = SmtpTransport(smtp_config(backend)).probe(
                # The envelope takes the bare address: "Shop <notify@shop.example>"
                # is a valid from address, and the probe's MAIL FROM refuses
                # angle brackets. An unusable one goes as given, to be refused.
                mail_from=check_email(backend.from_address).address
                or backend.from_address
                or probe_recipient,
                rcpt_to=probe_recipient,
                deadline=deadline,
            )
    except secrets.SecretError as err:
        result = ProbeResult(
            ok=False,
            reason="secret_unreadable",
            phase="connect",
            code=None,
            reply=str(err),
            transcript=[],
            elapsed=0.0,
        )
    _record_test(backend, version, result, actor=actor)
    return result


# A service, not a test case: keep pytest from collecting it where it is imported.
test_backend.__test__ = False  # type: ignore[attr-defined]


def _record_test(backend: Backend, version: int, result: ProbeResult, *, actor: str) -> None:
    now = timezone.now()
    summary: dict[str, Any] = asdict(result)
    summary["at"] = now.isoformat()
    summary["settings_version"] = version
    summary["actor"] = actor
    fields: dict[str, Any] = {"last_test_at": now, "last_test_result": summary}
    if result.ok:
        fields.update(
            health=Health.OK,
            health_reason="",
            health_detail="",
            tested_version=version,
            health_changed_at=now,
        )
    else:
        fields.update(
            health=Health.FAILING,
            health_reason=result.reason,
            health_detail=f"{result.reply}".strip() or result.reason,
            health_changed_at=now,
        )
    # A test of settings that were edited meanwhile says nothing about the new ones.
    updated = Backend.objects.filter(pk=backend.pk, settings_version=version).update(**fields)
    backend.refresh_from_db()
    released: list[int] = []
    if updated and result.ok:
        released = release_held(backend, actor=actor)
        logger.info("backend %s tested ok; %s messages released", backend.name, len(released))
        alerts.backend_recovered(backend)
    elif updated:
        alerts.backend_failing(backend)
    # A test changes what is sent (a success releases the held messages): audited.
    if not updated:
        outcome = "not recorded: the settings changed while it ran"
    elif result.ok:
        outcome = f"succeeded; {plural(len(released), 'held message')} released"
    else:
        outcome = f"failed at the {result.phase} step: {result.reason}"
    record_audit(
        actor=actor,
        action="test_backend",
        object_type="backend",
        object_ids=[backend.pk],
        ok=result.ok,
        result=f"Test of backend {backend.name} (settings version {version}) {outcome}.",
    )


# ------------------------------------------------------------------ settings

# The settings an administrator sets that are columns of their own, by the
# names the forms, the API and the CLI give them: what the audit names when a
# backend changes.
SETTING_COLUMNS = (
    "name",
    "kind",
    "host",
    "port",
    "security",
    "username",
    "from_address",
    "timeout",
    "is_default",
    "limit",
    "rate_per_minute",
    "max_connections",
)

# Everything a save may carry: those, the channel (on creation), the secrets
# and their clear flags, and an SMS provider's options.
BACKEND_FIELDS = frozenset(
    {
        *SETTING_COLUMNS,
        "channel",
        "password",
        "clear_password",
        "receipt_secret",
        "clear_receipt_secret",
        *sms_backends.OPTION_KEYS,
    }
)


def _amount(value: int) -> str:
    """A bound as people write it: 65535 for a port, 1,000,000 for a count."""
    return str(value) if value < 100_000 else f"{value:,}"


HOST_ONLY = "Give the host name only"


def _check_host(value: str) -> tuple[str, str]:
    """An SMTP server's host as typed: (the host to store, "") when it is a
    host name or an IP address, else ("", what is wrong with it).

    Pasted URLs and "host:port" are the usual mistakes; without this check
    they would only show up at the backend test, as "host not found".
    """
    if "://" in value:
        scheme = value.split("://", 1)[0]
        return "", f"{HOST_ONLY}, without {scheme}:// — the port has its own field."
    if "@" in value:
        return "", f"{HOST_ONLY}, without a user name and @ — the user name has its own field."
    cut = next((i for i, c in enumerate(value) if c in "/\\?#"), None)
    if cut is not None:
        return "", f"{HOST_ONLY}, without {value[cut:]} after it."
    if value.startswith("["):
        # An IPv6 address as URLs write it: [2001:db8::1], maybe with a port.
        inside, closed, after = value[1:].partition("]")
        if after.startswith(":"):
            return "", f"{HOST_ONLY}, without {after} — the port has its own field."
        if not closed or after or not inside:
            return "", f"{value} is not a valid IPv6 address."
        value = inside
        if ":" not in value:
            return "", f"Write an IPv4 address or a host name without brackets: {value}."
    if value.count(":") == 1:
        port = value.split(":", 1)[1]
        if port.isdigit() or not port:
            return "", f"{HOST_ONLY}, without :{port} — the port has its own field."
        return "", _bad_host_name(value)
    if ":" in value:
        try:
            return str(ipaddress.IPv6Address(value)), ""
        except ValueError:
            return "", f"{value} is not a valid IPv6 address."
    if value.replace(".", "").isdigit():
        try:
            return str(ipaddress.IPv4Address(value)), ""
        except ValueError:
            return "", f"{value} is not a valid IPv4 address."
    name = value[:-1] if value.endswith(".") else value
    ascii_length = 0
    for label in name.split("."):
        if label.isascii():
            # Letters, digits and hyphens; underscores too, which some
            # internal names (container service names) carry.
            ok = (
                0 < len(label) <= 63
                and all(c.isalnum() or c in "-_" for c in label)
                and not label.startswith("-")
                and not label.endswith("-")
            )
            ascii_length += len(label) + 1
        else:
            try:
                encoded = idna.encode(label, uts46=True)
            except (idna.IDNAError, UnicodeError):
                ok = False
            else:
                ok = len(encoded) <= 63
                ascii_length += len(encoded) + 1
        if not ok:
            return "", _bad_host_name(value)
    if ascii_length - 1 > 253:
        return "", "A host name has at most 253 characters."
    return value, ""


def _bad_host_name(value: str) -> str:
    return (
        f"{value} is not a valid host name: give a name such as smtp.example.com "
        "(letters, digits and hyphens, with dots between the parts) or an IP address."
    )


def _clean_backend_data(data: dict[str, Any], current: Backend | None) -> dict[str, Any]:
    errors: dict[str, list[str]] = {}
    unknown = set(data) - BACKEND_FIELDS
    if unknown:
        errors["__all__"] = [f"Unknown field(s): {', '.join(sorted(unknown))}."]
    cleaned: dict[str, Any] = {}

    def text(key: str, *, required: bool = False, max_length: int = 255) -> None:
        if key not in data:
            if required and current is None:
                errors[key] = ["This field is required."]
            return
        value = data[key]
        if value is None:
            value = ""
        if not isinstance(value, str):
            errors[key] = ["Must be text."]
            return
        value = value.strip()
        if required and not value:
            errors[key] = ["This field is required."]
        elif len(value) > max_length:
            errors[key] = [f"At most {max_length} characters."]
        elif any(c.isspace() or ord(c) < 32 for c in value) and key in ("host", "username"):
            errors[key] = ["Spaces and control characters are not allowed."]
        else:
            cleaned[key] = value

    def number(
        key: str,
        low: int,
        high: int,
        *,
        unit: str = "",
        integer: bool = True,
        optional: bool = False,
    ) -> None:
        if key not in data:
            return
        value = data[key]
        if value in (None, "") and optional:
            cleaned[key] = None
            return
        try:
            # True and False are ints to Python, not numbers to an administrator.
            if isinstance(value, bool):
                raise TypeError
            parsed = int(value) if integer else float(value)
            if integer and isinstance(value, float) and not value.is_integer():
                raise ValueError
        except (TypeError, ValueError):
            errors[key] = ["Enter a whole number." if integer else "Enter a number."]
            return
        if not (low <= parsed <= high):
            errors[key] = [f"Must be between {_amount(low)} and {_amount(high)}{unit}."]
            return
        cleaned[key] = parsed

    channel = data.get("channel", current.channel if current else Channel.EMAIL)
    if channel not in Channel.values:
        errors["channel"] = [f"Use one of {', '.join(Channel.values)}."]
    elif current is not None and channel != current.channel:
        errors["channel"] = ["The channel of a backend cannot change; create another backend."]
    elif current is None:
        cleaned["channel"] = channel
    sms = channel == Channel.SMS
    text("name", required=True, max_length=100)
    if sms:
        cleaned.update(sms_backends.clean_sms_settings(data, current, errors))
    else:
        text("host", required=True)
        if "host" in cleaned:
            host, problem = _check_host(cleaned["host"])
            if problem:
                errors["host"] = [problem]
                del cleaned["host"]
            else:
                cleaned["host"] = host
        text("username")
        if data.get("kind", "smtp") != "smtp":
            errors["kind"] = ["An email backend is an SMTP server (kind smtp)."]
        for key in sorted(sms_backends.OPTION_KEYS & set(data)):
            errors[key] = ["Not a setting of an email backend."]
        for key in ("receipt_secret", "clear_receipt_secret"):
            if key in data:
                errors[key] = ["Not a setting of an email backend."]
    number("port", 1, 65535)
    number("timeout", 1, 120, unit=" seconds", integer=False)
    # An SMS backend's allowance is counted in credits: one per segment.
    number("limit", 0, 10**9, unit=" credits" if sms else " messages", optional=True)
    number("rate_per_minute", 1, 10**6, unit=" messages a minute", optional=True)
    number("max_connections", 1, 1000, unit=" connections", optional=True)
    if "security" in data:
        if data["security"] not in Security.values:
            errors["security"] = [f"Use one of {', '.join(Security.values)}."]
        else:
            cleaned["security"] = data["security"]
    if "from_address" in data and not sms:
        raw = (
            (data["from_address"] or "").strip() if isinstance(data["from_address"], str) else None
        )
        if raw is None:
            errors["from_address"] = ["Must be text."]
        elif not raw and current is None:
            errors["from_address"] = ["This field is required."]
        else:
            checked = check_email(raw)
            if checked.error:
                errors["from_address"] = [checked.error]
            else:
                cleaned["from_address"] = raw
    for key in ("is_default", "clear_password", "clear_receipt_secret"):
        if key in data:
            if not isinstance(data[key], bool):
                errors[key] = ["Must be true or false."]
            else:
                cleaned[key] = data[key]
    for key in ("password", "receipt_secret"):
        if key not in data:
            continue
        value = data[key]
        if value is not None and not isinstance(value, str):
            errors[key] = ["Must be text."]
        elif value:
            if len(value) > 1000:
                errors[key] = ["At most 1000 characters."]
            else:
                cleaned[key] = value
    if "name" in cleaned:
        clash = Backend.objects.filter(name=cleaned["name"])
        if current is not None:
            clash = clash.exclude(pk=current.pk)
        if clash.exists():
            errors["name"] = [f"A backend named {cleaned['name']} already exists."]
    if errors:
        raise InvalidInput(errors)
    return cleaned


def _setting_values(backend: Backend) -> dict[str, Any]:
    """The backend's settings by name; an SMS backend's provider options one by
    one, and without its host, which is read from its provider's address."""
    values = {key: getattr(backend, key) for key in SETTING_COLUMNS}
    if backend.channel == Channel.SMS:
        del values["host"]
        values.update(backend.options or {})
    return values


def _same_secret(token: str, typed: str) -> bool:
    """Whether the stored (encrypted) ``token`` holds ``typed``. One that
    cannot be decrypted does not: typing it again is what repairs it."""
    if not token:
        return False
    try:
        stored = secrets.decrypt(token)
    except secrets.SecretError:
        return False
    return hmac.compare_digest(stored.encode(), typed.encode())


# What decides where a backend's secret is sent, by its name in messages.
_DESTINATION_LABELS = {
    "host": "server",
    "port": "port",
    "security": "security",
    "username": "user name",
    "kind": "kind",
    "base_url": "Twilio base URL",
    "url": "gateway URL",
    "probe_url": "test URL",
}


def _destination(backend: Backend) -> dict[str, Any]:
    """The settings that say where (and as whom) the stored secret goes."""
    if backend.channel == Channel.SMS:
        options = backend.options or {}
        return {
            "kind": backend.kind,
            "username": backend.username,
            "base_url": options.get("base_url", ""),
            "url": options.get("url", ""),
            "probe_url": options.get("probe_url", ""),
        }
    return {
        "host": backend.host,
        "port": backend.port,
        "security": backend.security,
        "username": backend.username,
    }


def _secret_must_be_retyped(moved: list[str], *, sms: bool) -> InvalidInput:
    labels = {**_DESTINATION_LABELS, "username": "Account SID"} if sms else _DESTINATION_LABELS
    what = ", ".join(labels[key] for key in moved)
    secret = "secret" if sms else "password"
    return InvalidInput(
        {
            "password": [
                f"Enter the {secret} again: this change ({what}) sends the stored {secret} "
                "somewhere else, so it is only kept when it is typed in the same save. "
                f"(Or clear the {secret}.)"
            ]
        }
    )


def _channel_noun(channel: str) -> str:
    return "SMS" if channel == Channel.SMS else "email"


def _default_refusal(backend: Backend) -> InvalidInput:
    noun = _channel_noun(backend.channel)
    return InvalidInput(
        {
            "is_default": [
                f"Backend {backend.name} is the default {noun} backend: {noun} messages "
                f"without a backend of their own go through it. Make another {noun} backend "
                "the default first."
            ]
        }
    )


def save_backend_settings(
    *, backend: Backend | None = None, data: dict[str, Any], actor: str
) -> Backend:
    """Create or edit a backend (an SMTP server, or an SMS provider).

    The password is write-only: absent or blank keeps the stored one, the
    same one typed again is no change, ``clear_password`` removes it. A
    change of where it goes (server, port, security, user name; an SMS
    backend's kind, account, Twilio base URL, gateway or test URL) is
    refused unless the password is typed again or cleared in the same save. Any
    change to a connection setting raises the settings version and makes the
    backend untested, so its queued messages are held until a test of the new
    settings succeeds. Raising the limit releases messages waiting for
    allowance.

    A channel always keeps its default backend once it has one: making a
    backend the default takes the role from the previous one, and un-setting
    it on the default itself is refused. A backend that passed its test and
    becomes the default releases the messages held because the channel had
    no default backend. The audit names the settings whose value changed
    (a secret by its name only).
    """
    cleaned = _clean_backend_data(data, backend)
    password = cleaned.pop("password", None)
    clear = cleaned.pop("clear_password", False)
    receipt_secret = cleaned.pop("receipt_secret", None)
    clear_receipt = cleaned.pop("clear_receipt_secret", False)
    released: list[int] = []
    with transaction.atomic():
        target = backend or Backend(channel=cleaned.get("channel", Channel.EMAIL), kind="smtp")
        if backend is not None:
            target = Backend.objects.select_for_update().get(pk=backend.pk)
        # Checked on the locked row: the role may have moved since the form was shown.
        was_default = backend is not None and target.is_default
        if was_default and cleaned.get("is_default") is False:
            raise _default_refusal(target)
        before = {f: getattr(target, f) for f in CONNECTION_FIELDS}
        settings_before = _setting_values(target)
        destination_before = _destination(target)
        old_left = target.left if backend is not None else None
        for key, value in cleaned.items():
            setattr(target, key, value)
        # A stored secret is never led to another server, port, security or
        # account by whoever may edit settings but does not know it: moving
        # it needs it typed again (issue 16: press Test, catch the password).
        if backend is not None and target.secret and password is None and not clear:
            destination_after = _destination(target)
            moved = [k for k in destination_before if destination_before[k] != destination_after[k]]
            if moved:
                raise _secret_must_be_retyped(moved, sms=target.channel == Channel.SMS)
        secrets_changed: set[str] = set()
        if password is not None:
            if backend is None or not _same_secret(target.secret, password):
                target.secret = secrets.encrypt(password)
                secrets_changed.add("password")
        elif clear and target.secret:
            target.secret = ""
            secrets_changed.add("password")
        if receipt_secret is not None:
            if backend is None or not _same_secret(target.receipt_secret, receipt_secret):
                target.receipt_secret = secrets.encrypt(receipt_secret)
                secrets_changed.add("receipt_secret")
        elif clear_receipt and target.receipt_secret:
            target.receipt_secret = ""
            secrets_changed.add("receipt_secret")
        changed = [f for f in CONNECTION_FIELDS if getattr(target, f) != before[f]]
        if backend is not None and changed:
            target.settings_version += 1
            target.health = Health.UNTESTED
            target.health_reason = "settings_changed"
            target.health_detail = ""
            target.health_changed_at = timezone.now()
        replaced: list[str] = []
        if target.is_default:
            others = Backend.objects.filter(channel=target.channel, is_default=True).exclude(
                pk=target.pk
            )
            replaced = list(others.values_list("name", flat=True))
            others.update(is_default=False)
        target.save()
        if target.is_default and not was_default and target.is_usable:
            released = release_held(target, actor=actor, became_default=True)
        settings_after = _setting_values(target)
        if backend is None:
            given = set(cleaned) | set(target.options or {})
            shown = sorted({key for key in settings_after if key in given} | secrets_changed)
            result = f"Created with: {', '.join(shown)}"
        else:
            shown = sorted(
                {
                    key
                    for key in settings_before.keys() | settings_after.keys()
                    if settings_before.get(key) != settings_after.get(key)
                }
                | secrets_changed
            )
            result = f"Changed: {', '.join(shown) or 'nothing'}"
            if changed:
                result += f"; settings version {target.settings_version}, test required"
        if replaced:
            noun = _channel_noun(target.channel)
            result += f"; the default {noun} backend instead of {', '.join(replaced)}"
        if released:
            result += f"; {plural(len(released), 'held message')} released"
        record_audit(
            actor=actor,
            action="create_backend" if backend is None else "update_backend",
            object_type="backend",
            object_ids=[target.pk],
            result=result,
            data={"changed": shown},
        )
    if backend is not None and changed:
        hold_queued(
            target,
            reason=Reason.BACKEND_UNTESTED,
            text=(
                f"The settings of backend {target.name} changed (version "
                f"{target.settings_version}) and have not been tested yet. Run the test; "
                "held messages go out when it succeeds."
            ),
        )
    if backend is not None and old_left == 0 and (target.left is None or target.left > 0):
        Message.objects.filter(
            backend=target, status=Status.WAITING, reason_code=Reason.ALLOWANCE_EXHAUSTED
        ).update(next_attempt_at=timezone.now())
        alerts.allowance_available(target)
    if released:
        logger.info(
            "backend %s became the default; %s messages released", target.name, len(released)
        )
    return target


def reset_sent_count(backend: Backend, *, actor: str) -> None:
    """Start a new allowance period; messages waiting for allowance go out."""
    with transaction.atomic():
        Backend.objects.filter(pk=backend.pk).update(sent_count=0)
        Message.objects.filter(
            backend=backend, status=Status.WAITING, reason_code=Reason.ALLOWANCE_EXHAUSTED
        ).update(next_attempt_at=timezone.now())
        record_audit(
            actor=actor, action="reset_sent_count", object_type="backend", object_ids=[backend.pk]
        )
    backend.refresh_from_db()
    alerts.allowance_available(backend)


def rotate_secrets() -> tuple[int, list[str]]:
    """Re-encrypt every stored backend secret under the newest key.

    Returns (how many were re-encrypted, names of backends whose secret could
    not be read).
    """
    done, failed = 0, []
    for backend in Backend.objects.exclude(secret=""):
        try:
            token = secrets.rotate(backend.secret)
        except secrets.SecretError:
            failed.append(backend.name)
            continue
        Backend.objects.filter(pk=backend.pk).update(secret=token)
        done += 1
    return done, failed


@dataclass
class TestMessageResult:
    ok: bool
    text: str
    reply: str = ""
    queue_id: str = ""


def _refuse_blocked(entry: Suppression | None, recipient: str) -> None:
    """The blocklist's promise holds for test messages too: nothing is sent
    to an entry on it."""
    if entry is None:
        return
    why = f" ({entry.reason})" if entry.reason else ""
    raise InvalidInput(
        {
            "to": [
                f"{recipient} is on the blocklist as {entry.value}{why}: nothing is sent to it. "
                "Test with another recipient, or remove the entry from the blocklist first."
            ]
        }
    )


def send_test_sms(backend: Backend, *, to: str, actor: str) -> TestMessageResult:
    """Send one real SMS through an SMS backend, straight away, to a number the
    administrator typed: the end-to-end check the credential test cannot make."""
    region = GlobalSettings.load().default_region
    number, problem = check_mobile(to or "", region=region)
    if problem:
        raise InvalidInput({"to": [problem]})
    _refuse_blocked(find_number_blocks([number]).get(number), number)
    if not backend.is_usable:
        result = TestMessageResult(
            False, "Run the test of the current settings first; it must succeed."
        )
    else:
        envelope = SmsEnvelope(
            to=number,
            sender=backend.from_address,
            body=f"Outbound test SMS from backend {backend.name}, sent by {actor}.",
            message_id=sms_message_id(),
        )
        try:
            transport = sms_backends.sms_transport(backend)
            transport.open()
            try:
                sent = transport.send(envelope)
            finally:
                transport.close()
        except (TransportError, secrets.SecretError) as err:
            reply = f"{err.code} {err.reply}".strip() if isinstance(err, TransportError) else ""
            result = TestMessageResult(
                False, f"The test SMS to {number} was not accepted: {err}", reply
            )
        else:
            result = TestMessageResult(
                True,
                f"{backend.name} accepted the test SMS to {number}: {sent.reply}.",
                sent.reply,
                sent.queue_id,
            )
    record_audit(
        actor=actor,
        action="send_test_sms",
        object_type="backend",
        object_ids=[backend.pk],
        ok=result.ok,
        result=result.text,
        data={"to": number},
    )
    return result


send_test_sms.__test__ = False  # type: ignore[attr-defined]


def send_test_message(backend: Backend, *, to: str, actor: str) -> TestMessageResult:
    """Send one real message through the backend, straight away, to an address
    the administrator typed: the end-to-end check the probe cannot make.

    It does not go through the outbox (the administrator waits for its reply),
    and only a backend whose current settings passed the test may send it.
    """
    checked = check_email(to or "")
    if checked.error:
        raise InvalidInput({"to": [checked.error]})
    _refuse_blocked(find_blocks([checked.address]).get(checked.address.lower()), checked.address)
    if backend.is_usable:
        result = _send_test_message(backend, to=checked.address, actor=actor)
    else:
        result = TestMessageResult(
            False, "Run the test of the current settings first; it must succeed."
        )
    record_audit(
        actor=actor,
        action="send_test_message",
        object_type="backend",
        object_ids=[backend.pk],
        ok=result.ok,
        result=result.text,
        data={"to": checked.address},
    )
    return result


send_test_message.__test__ = False  # type: ignore[attr-defined]


def _send_test_message(backend: Backend, *, to: str, actor: str) -> TestMessageResult:
    msg = EmailMessage(policy=email_policy.SMTP)
    msg["From"] = backend.from_address
    msg["To"] = to
    msg["Subject"] = f"Outbound test message from backend {backend.name}"
    msg["Date"] = format_datetime(timezone.now())
    msg["Message-ID"] = make_message_id(backend.from_address)
    msg.set_content(
        f"This message was sent by {actor} from Outbound to check that backend "
        f"{backend.name} ({backend.host}:{backend.port}) delivers. Nothing needs to be done.\n"
    )
    envelope = Envelope(
        mail_from=check_email(backend.from_address).address,
        recipients=[to],
        message=msg.as_bytes(),
    )
    try:
        with SmtpTransport(smtp_config(backend)) as transport:
            sent = transport.send(envelope)
    except (TransportError, secrets.SecretError) as err:
        reply = f"{err.code} {err.reply}".strip() if isinstance(err, TransportError) else ""
        result = TestMessageResult(
            False, f"The test message to {to} was not accepted: {err}", reply
        )
    else:
        queue = f" (queue id {sent.queue_id})" if sent.queue_id else ""
        result = TestMessageResult(
            True,
            f"{backend.host} accepted the test message to {to}: {sent.code} {sent.reply}{queue}.",
            f"{sent.code} {sent.reply}",
            sent.queue_id,
        )
    return result
