"""SMS backends: check their settings, build their transports.

Contract: ``clean_sms_settings`` validates the SMS part of a backend's
settings (the kind, the sender, the kind's own options) and returns the
values to store, or field errors; it writes nothing. ``sms_transport`` builds
the transport of a stored backend, decrypting its secret (``SecretError``
when that fails). The generic parts (name, limits, the write-only secret,
versions and health) stay in ``services.backends``.
"""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Any
from urllib.parse import urlsplit

import phonenumbers

from outbound import conf, secrets
from outbound.models import Backend, BackendKind
from outbound.transports.console import ConsoleSmsTransport
from outbound.transports.http_sms import (
    DEFAULT_BODY_TEMPLATE,
    HttpSmsConfig,
    HttpSmsTransport,
    url_problem,
    validate_http_config,
)
from outbound.transports.locmem import LocmemSmsTransport
from outbound.transports.sms_base import SmsTransport
from outbound.transports.twilio import DEFAULT_BASE_URL, TwilioConfig, TwilioTransport

SMS_KINDS = (BackendKind.TWILIO, BackendKind.HTTP, BackendKind.CONSOLE, BackendKind.LOCMEM)

TWILIO_API = DEFAULT_BASE_URL

# Option keys stored in Backend.options, per kind, with their defaults.
HTTP_OPTIONS: dict[str, Any] = {
    "url": "",
    "method": "POST",
    "headers": {},
    "body_template": DEFAULT_BODY_TEMPLATE,
    "id_path": "id",
    "error_path": "",
    "error_code_path": "",
    "idempotency_header": "Idempotency-Key",
    "invalid_number_codes": [],
    "probe_url": "",
    "probe_method": "GET",
}
TWILIO_OPTIONS: dict[str, Any] = {"base_url": TWILIO_API}
OPTION_KEYS = frozenset(HTTP_OPTIONS) | frozenset(TWILIO_OPTIONS)

_ACCOUNT_SID = re.compile(r"^AC[0-9a-fA-F]{32}$")
_SERVICE_SID = re.compile(r"^MG[0-9a-fA-F]{32}$")
# An alphanumeric sender id: up to 11 letters, digits and spaces, one letter at least.
_SENDER_ID = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}$")


def check_sender(raw: str, *, kind: str) -> str:
    """Why ``raw`` cannot be an SMS sender, or ""."""
    if not raw:
        return ""
    if kind == BackendKind.TWILIO and _SERVICE_SID.match(raw):
        return ""
    if raw.startswith("+"):
        try:
            number = phonenumbers.parse(raw, None)
        except phonenumbers.NumberParseException:
            return f"“{raw}” cannot be read as a phone number."
        if not phonenumbers.is_valid_number(number):
            return f"“{raw}” is not a valid phone number."
        if phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164) != raw:
            return "Write the number in E.164 form, e.g. +14155550100, without spaces."
        return ""
    if _SENDER_ID.match(raw):
        return ""
    extra = " or a messaging service SID (MG…)" if kind == BackendKind.TWILIO else ""
    return (
        "Use a number in E.164 form (+14155550100), an alphanumeric sender id of up to "
        f"11 letters and digits{extra}."
    )


LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})


def _is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def https_problem(url: str) -> str:
    """Why the secret may not be sent to ``url``, or "".

    The Twilio token and a gateway's secret travel with every request, so a
    provider URL must be https. Plain http is allowed for a loopback address
    only (a provider simulator on this host), and only in development
    (OUTBOUND_DEBUG) or with OUTBOUND_ALLOW_LOOPBACK_HTTP=1."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        return ""
    if _is_loopback(parts.hostname or "") and conf.allow_loopback_http():
        return ""
    loopback = (
        " Plain http is only accepted for a loopback address, with OUTBOUND_DEBUG=1 or "
        "OUTBOUND_ALLOW_LOOPBACK_HTTP=1."
    )
    return (
        "Use an https:// URL: the secret goes with every request to it, and over plain "
        f"http anyone on the way can read it.{loopback}"
    )


def clean_sms_settings(
    data: dict[str, Any], current: Backend | None, errors: dict[str, list[str]]
) -> dict[str, Any]:
    """The SMS fields of ``data`` checked and ready to set on the backend
    (``kind``, ``from_address``, ``username``, ``host``, ``options``); problems
    go into ``errors``."""
    cleaned: dict[str, Any] = {}
    kind = data.get("kind", current.kind if current else "")
    if kind not in SMS_KINDS:
        errors["kind"] = [f"Use one of {', '.join(str(k.value) for k in SMS_KINDS)}."]
        return cleaned
    cleaned["kind"] = kind
    for key in ("host", "port", "security"):
        if key in data:
            errors[key] = ["Not a setting of an SMS backend."]
    if "username" in data and kind != BackendKind.TWILIO and data["username"]:
        errors["username"] = ["Only a Twilio backend has an account SID."]
    options: dict[str, Any] = dict(current.options) if current and current.kind == kind else {}
    given = {k: data[k] for k in OPTION_KEYS if k in data}

    if "from_address" in data:
        sender = data["from_address"]
        if not isinstance(sender, str):
            errors["from_address"] = ["Must be text."]
        else:
            sender = sender.strip()
            problem = check_sender(sender, kind=kind)
            if problem:
                errors["from_address"] = [problem]
            elif not sender and kind in (BackendKind.TWILIO, BackendKind.HTTP):
                errors["from_address"] = ["This field is required: the number SMS are sent from."]
            else:
                cleaned["from_address"] = sender
    elif current is None and kind in (BackendKind.TWILIO, BackendKind.HTTP):
        errors["from_address"] = ["This field is required: the number SMS are sent from."]

    if kind == BackendKind.TWILIO:
        for key in set(given) - set(TWILIO_OPTIONS):
            errors[key] = ["Not a setting of a Twilio backend."]
        base_url = given.get("base_url", options.get("base_url", TWILIO_API)) or TWILIO_API
        problem = url_problem(
            base_url.strip() if isinstance(base_url, str) else base_url, required=True
        )
        problem = problem or https_problem(base_url.strip())
        if problem:
            errors["base_url"] = [problem]
        else:
            options = {"base_url": base_url.strip().rstrip("/")}
            cleaned["host"] = urlsplit(options["base_url"]).hostname or ""
        sid = data.get("username", current.username if current else "")
        if not isinstance(sid, str) or not _ACCOUNT_SID.match(sid.strip()):
            errors["username"] = ["Enter the Account SID: AC followed by 32 hexadecimal digits."]
        else:
            cleaned["username"] = sid.strip()
    elif kind == BackendKind.HTTP:
        for key in set(given) - set(HTTP_OPTIONS):
            errors[key] = ["Not a setting of an HTTP gateway backend."]
        merged = {**HTTP_OPTIONS, **options}
        for key, value in given.items():
            if key not in HTTP_OPTIONS:
                continue
            if key == "headers" and isinstance(value, str):
                try:
                    value = json.loads(value) if value.strip() else {}
                except ValueError:
                    errors["headers"] = ['Enter a JSON object such as {"X-Api-Key": "{secret}"}.']
                    continue
            if key == "invalid_number_codes" and isinstance(value, str):
                value = [c.strip() for c in value.split(",") if c.strip()]
            if isinstance(value, str):
                value = value.strip()
            if key == "body_template" and value == "":
                # Blank means "the standard body", not "no body".
                value = HTTP_OPTIONS["body_template"]
            merged[key] = value
        for key, problems in validate_http_config(merged).items():
            errors.setdefault(key, []).extend(problems)
        for key in ("url", "probe_url"):
            if key not in errors and merged.get(key):
                problem = https_problem(merged[key])
                if problem:
                    errors[key] = [problem]
        if not any(k in errors for k in HTTP_OPTIONS):
            options = merged
            cleaned["host"] = urlsplit(merged["url"]).hostname or ""
    else:
        for key in given:
            errors[key] = [f"Not a setting of a {BackendKind(kind).label.lower()} backend."]
        options = {}
        cleaned["host"] = ""
    cleaned["options"] = options
    return cleaned


def status_callback_url(backend: Backend) -> str:
    """Where the provider posts delivery receipts for ``backend``, or "" when the
    deployment has no public URL (then no receipts are asked for)."""
    base = conf.public_url()
    if not base or backend.kind not in (BackendKind.TWILIO, BackendKind.HTTP):
        return ""
    return f"{base}/hooks/sms/{backend.pk}/{backend.kind}"


def sms_transport(backend: Backend) -> SmsTransport:
    """The transport of a stored SMS backend; raises SecretError if its secret
    cannot be decrypted."""
    secret = secrets.decrypt(backend.secret, owner=f"backend {backend.name}")
    policy = conf.host_policy()
    options = backend.options or {}
    if backend.kind == BackendKind.TWILIO:
        return TwilioTransport(
            TwilioConfig(
                account_sid=backend.username,
                auth_token=secret,
                base_url=options.get("base_url") or TWILIO_API,
                timeout=backend.timeout,
                address_allowed=policy,
            )
        )
    if backend.kind == BackendKind.HTTP:
        # The option keys are HttpSmsConfig's own field names.
        merged = {key: options.get(key, default) for key, default in HTTP_OPTIONS.items()}
        merged["headers"] = dict(merged["headers"])
        merged["invalid_number_codes"] = list(merged["invalid_number_codes"])
        return HttpSmsTransport(
            HttpSmsConfig(**merged, secret=secret, timeout=backend.timeout, address_allowed=policy)
        )
    if backend.kind == BackendKind.CONSOLE:
        return ConsoleSmsTransport()
    return LocmemSmsTransport()
