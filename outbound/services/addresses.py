"""Address checks shared by validation and the forms: parse, normalise, look
up the blocklist. No writes."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from email.errors import HeaderParseError, NonASCIILocalPartDefect
from email.headerregistry import HeaderRegistry

from email_validator import EmailNotValidError, validate_email

from outbound.models import Suppression

_REGISTRY = HeaderRegistry()


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
    try:
        header = _REGISTRY("To", raw)
        mailboxes = header.addresses  # type: ignore[attr-defined]
        defects = [d for d in header.defects if not isinstance(d, NonASCIILocalPartDefect)]
    except (HeaderParseError, IndexError, ValueError, TypeError):
        return CheckedAddress(raw, "", "", f"“{raw}” is not an email address.")
    if len(mailboxes) != 1:
        if not mailboxes:
            return CheckedAddress(raw, "", "", "The address is empty.")
        return CheckedAddress(raw, "", "", f"“{raw}” holds several addresses; give one per entry.")
    if defects:
        return CheckedAddress(raw, "", "", f"“{raw}” is not an email address.")
    name, addr = mailboxes[0].display_name, mailboxes[0].addr_spec
    try:
        result = validate_email(addr, check_deliverability=False, allow_smtputf8=True)
    except EmailNotValidError as err:
        return CheckedAddress(raw, name, "", f"“{addr}” is not a valid email address: {err}")
    return CheckedAddress(raw, name, result.normalized, "")


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
