"""Address checks shared by validation and the forms: parse, normalise, look
up the blocklist. No writes."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from email.errors import HeaderParseError, NonASCIILocalPartDefect
from email.headerregistry import HeaderRegistry

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from outbound.models import Suppression

_REGISTRY = HeaderRegistry()
# Dot-atom local part @ dot-separated labels, printable ASCII only (RFC 5322
# atext): nothing a header parser could read as a name, comment, group or list.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_ADDRESS = re.compile(rf"{_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*")


@dataclass(frozen=True)
class CheckedAddress:
    raw: str
    name: str
    address: str  # normalised; "" when invalid
    error: str  # why it cannot be used; "" when valid

    @property
    def domain(self) -> str:
        return self.address.rsplit("@", 1)[1].lower() if "@" in self.address else ""


def check_email(raw: str) -> CheckedAddress:
    """Parse ``Name <addr>`` or a bare address and check its syntax (and IDN).

    Exactly one mailbox is accepted: a list or a group would smuggle in
    recipients nobody chose.
    """
    if _PLAIN_ADDRESS.fullmatch(raw):
        # A bare ASCII address in dot-atom form: the header parser would
        # return it unchanged as the only mailbox, with no name.
        return _plain_checked(raw)
    return _parse_and_check(raw)


# Within these lengths email-validator's verdict on a plain ASCII address
# rests on its domain alone (tests/test_addresses.py compares the two).
_LOCAL_MAX = 64
_ADDRESS_MAX = 254


def _plain_checked(address: str) -> CheckedAddress:
    """``check_email`` of a bare ASCII dot-atom address, asking
    email-validator once per domain rather than once per address: a large
    send has thousands of addresses and a handful of domains."""
    local, _, domain = address.rpartition("@")
    if len(local) <= _LOCAL_MAX and len(address) <= _ADDRESS_MAX:
        normalized = _domain_verdict(domain)
        if normalized:
            return CheckedAddress(address, "", f"{local}@{normalized}", "")
    # Refused, or past the lengths: email-validator's own verdict and words.
    return _validated(address, "", address)


@functools.lru_cache(maxsize=4096)
def _domain_verdict(domain: str) -> str:
    """The domain as email-validator normalises it, or "" if it refuses it."""
    try:
        return validate_email(f"x@{domain}", check_deliverability=False).domain
    except EmailNotValidError:
        return ""


def _parse_and_check(raw: str) -> CheckedAddress:
    """``check_email`` through the email package's header parser."""
    try:
        header = _REGISTRY("To", raw)
        mailboxes = header.addresses  # type: ignore[attr-defined]
        defects = [d for d in header.defects if not isinstance(d, NonASCIILocalPartDefect)]
    except (HeaderParseError, IndexError, ValueError, TypeError, AttributeError):
        # AttributeError: the email package trips over some inputs, e.g. "x:;)".
        return CheckedAddress(raw, "", "", f"“{raw}” is not an email address.")
    if len(mailboxes) != 1:
        if not mailboxes:
            return CheckedAddress(raw, "", "", "The address is empty.")
        return CheckedAddress(raw, "", "", f"“{raw}” holds several addresses; give one per entry.")
    if defects:
        return CheckedAddress(raw, "", "", f"“{raw}” is not an email address.")
    return _validated(raw, mailboxes[0].display_name, mailboxes[0].addr_spec)


@functools.lru_cache(maxsize=4096)
def _validated(raw: str, name: str, addr: str) -> CheckedAddress:
    """email-validator's verdict, remembered: the same sender is checked for
    every message, and the same recipients come back."""
    try:
        result = validate_email(addr, check_deliverability=False, allow_smtputf8=True)
    except EmailNotValidError as err:
        return CheckedAddress(raw, name, "", f"“{addr}” is not a valid email address: {err}")
    return CheckedAddress(raw, name, result.normalized, "")


_PARSE_PROBLEMS = {
    phonenumbers.NumberParseException.INVALID_COUNTRY_CODE: "has no valid country code",
    phonenumbers.NumberParseException.NOT_A_NUMBER: "is not a phone number",
    phonenumbers.NumberParseException.TOO_SHORT_AFTER_IDD: "is too short",
    phonenumbers.NumberParseException.TOO_SHORT_NSN: "is too short",
    phonenumbers.NumberParseException.TOO_LONG: "is too long",
}


def check_mobile(raw: str, *, region: str) -> tuple[str, str]:
    """(E.164 number, "") or ("", why it cannot take an SMS).

    A number without a country code is read in ``region`` (the global
    settings' default region). Possible-but-invalid numbers, and numbers that
    are valid but not mobile (landlines, toll-free, premium), are refused with
    the problem named.
    """
    raw = raw.strip()
    if not raw:
        return "", "The number is empty."
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException as err:
        problem = _PARSE_PROBLEMS.get(err.error_type, "cannot be read as a phone number")
        if err.error_type == phonenumbers.NumberParseException.INVALID_COUNTRY_CODE:
            problem += f" (and the default region {region} does not apply)"
        return "", f"The number “{raw}” {problem}."
    length = phonenumbers.is_possible_number_with_reason(number)
    if length != phonenumbers.ValidationResult.IS_POSSIBLE:
        problem = {
            phonenumbers.ValidationResult.TOO_SHORT: "is too short",
            phonenumbers.ValidationResult.TOO_LONG: "is too long",
            phonenumbers.ValidationResult.INVALID_COUNTRY_CODE: "has no valid country code",
        }.get(length, "has the wrong length")
        region_name = phonenumbers.region_code_for_number(number) or region
        return "", f"The number “{raw}” {problem} for its country ({region_name})."
    if not phonenumbers.is_valid_number(number):
        return "", f"The number “{raw}” does not exist in its country's numbering plan."
    kind = phonenumbers.number_type(number)
    if kind not in (
        phonenumbers.PhoneNumberType.MOBILE,
        phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
    ):
        what = {
            phonenumbers.PhoneNumberType.FIXED_LINE: "a landline",
            phonenumbers.PhoneNumberType.TOLL_FREE: "a toll-free number",
            phonenumbers.PhoneNumberType.PREMIUM_RATE: "a premium-rate number",
            phonenumbers.PhoneNumberType.VOIP: "a VoIP number",
            phonenumbers.PhoneNumberType.PAGER: "a pager number",
        }.get(kind, "not a mobile number")
        return "", f"The number “{raw}” is {what}; an SMS needs a mobile number."
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164), ""


def find_number_blocks(numbers: Iterable[str]) -> dict[str, Suppression]:
    """Map each blocked E.164 number to its blocklist entry."""
    wanted = {n for n in numbers if n}
    if not wanted:
        return {}
    return {
        e.value: e
        for e in Suppression.objects.filter(kind=Suppression.Kind.NUMBER, value__in=wanted)
    }


def parent_domains(domain: str) -> list[str]:
    labels = domain.lower().strip(".").split(".")
    return [".".join(labels[i:]) for i in range(len(labels))]


def find_blocks(addresses: Iterable[str]) -> dict[str, Suppression]:
    """Map each blocked address (lower case) to the blocklist entry that matched.

    An address entry wins over a domain entry; a domain entry covers its
    subdomains.
    """
    addrs = {a.lower() for a in addresses if a}
    if not addrs:
        return {}
    domains = {d for a in addrs for d in parent_domains(a.rsplit("@", 1)[-1])}
    entries = list(
        Suppression.objects.filter(kind=Suppression.Kind.ADDRESS, value__in=addrs)
    ) + list(Suppression.objects.filter(kind=Suppression.Kind.DOMAIN, value__in=domains))
    by_address = {e.value: e for e in entries if e.kind == Suppression.Kind.ADDRESS}
    by_domain = {e.value: e for e in entries if e.kind == Suppression.Kind.DOMAIN}
    found: dict[str, Suppression] = {}
    for a in addrs:
        if a in by_address:
            found[a] = by_address[a]
            continue
        for d in parent_domains(a.rsplit("@", 1)[-1]):
            if d in by_domain:
                found[a] = by_domain[d]
                break
    return found
