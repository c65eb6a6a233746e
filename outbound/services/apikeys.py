"""API keys: create, revoke, authenticate.

Contract: ``create_api_key`` returns the key row and the plaintext key, which
is never stored and cannot be shown again; only its SHA-256 is kept.
``check_api_key`` says whether a presented key is usable and, when it is not,
why (unknown, revoked, expired), so the API can answer with a specific 401.
Scopes are ordered: admin includes write, write includes read.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from outbound.errors import InvalidInput, NotFound
from outbound.models import ApiKey
from outbound.services.audit import record_audit

KEY_MARK = "obk_"
SCOPE_RANK: dict[str, int] = {"read": 1, "write": 2, "admin": 3}
# Writing last_used_at on every request would turn every read into a write.
LAST_USED_RESOLUTION = timedelta(minutes=1)
# A dummy hash compared against when the prefix is unknown, so an unknown key
# costs the same time as a wrong one.
_DUMMY_HASH = hashlib.sha256(b"outbound-no-such-key").hexdigest()


@dataclass(frozen=True)
class KeyCheck:
    key: ApiKey | None
    problem: str  # "" when the key is usable; else missing|invalid|revoked|expired

    @property
    def ok(self) -> bool:
        return self.key is not None and not self.problem


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode("utf-8", "surrogatepass")).hexdigest()


def scope_allows(granted: str, needed: str) -> bool:
    return SCOPE_RANK.get(granted, 0) >= SCOPE_RANK.get(needed, 99)


def _split(token: str) -> str | None:
    """The prefix part of a presented key, or None when it is not shaped like ours."""
    if not token.startswith(KEY_MARK):
        return None
    rest = token[len(KEY_MARK) :]
    prefix, sep, secret = rest.partition("_")
    if not sep or not prefix or not secret or len(prefix) != 8:
        return None
    return KEY_MARK + prefix


def create_api_key(
    *, name: str, scope: str, actor: str, expires_at: datetime | None = None
) -> tuple[ApiKey, str]:
    """Create a key; return it and the plaintext, which is shown this once."""
    errors: dict[str, list[str]] = {}
    name = (name or "").strip()
    if not name:
        errors["name"] = ["A name is required."]
    elif len(name) > 100:
        errors["name"] = ["At most 100 characters."]
    if scope not in ApiKey.Scope.values:
        errors["scope"] = [f"Use one of {', '.join(ApiKey.Scope.values)}."]
    if expires_at is not None:
        if timezone.is_naive(expires_at):
            errors["expires_at"] = ["Give a time zone."]
        elif expires_at <= timezone.now():
            errors["expires_at"] = ["Must be in the future."]
    if errors:
        raise InvalidInput(errors)
    with transaction.atomic():
        for _ in range(5):
            prefix = KEY_MARK + secrets.token_hex(4)
            if not ApiKey.objects.filter(prefix=prefix).exists():
                break
        plaintext = f"{prefix}_{secrets.token_urlsafe(32)}"
        key = ApiKey.objects.create(
            name=name,
            prefix=prefix,
            key_hash=hash_key(plaintext),
            scope=scope,
            created_by=actor,
            expires_at=expires_at,
        )
        record_audit(
            actor=actor,
            action="create_api_key",
            object_type="apikey",
            object_ids=[key.pk],
            result=f"{key} scope {scope}",
        )
    return key, plaintext


def find_api_key(ref: str) -> ApiKey:
    """A key by its prefix (with or without the ``obk_`` mark) or its id."""
    ref = (ref or "").strip()
    candidates = [ref, KEY_MARK + ref] if not ref.startswith(KEY_MARK) else [ref]
    key = ApiKey.objects.filter(prefix__in=candidates).first()
    if key is None and ref.isdigit():
        key = ApiKey.objects.filter(pk=int(ref)).first()
    if key is None:
        raise NotFound(f"There is no API key {ref!r}.")
    return key


def revoke_api_key(key: ApiKey, *, actor: str) -> bool:
    """Revoke ``key``; False if it was revoked already."""
    with transaction.atomic():
        changed = ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
        key.refresh_from_db()
        record_audit(
            actor=actor,
            action="revoke_api_key",
            object_type="apikey",
            object_ids=[key.pk],
            ok=bool(changed),
            result=f"{key} revoked" if changed else f"{key} was already revoked",
        )
    return bool(changed)


def check_api_key(token: str | None) -> KeyCheck:
    """Whether a presented key is usable, and if not, why."""
    token = (token or "").strip()
    if not token:
        return KeyCheck(None, "missing")
    prefix = _split(token)
    key = ApiKey.objects.filter(prefix=prefix).first() if prefix else None
    presented = hash_key(token)
    if not hmac.compare_digest(presented, key.key_hash if key else _DUMMY_HASH) or key is None:
        return KeyCheck(None, "invalid")
    now = timezone.now()
    if key.revoked_at is not None:
        return KeyCheck(key, "revoked")
    if key.expires_at is not None and key.expires_at <= now:
        return KeyCheck(key, "expired")
    if key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        key.last_used_at = now
    return KeyCheck(key, "")


def authenticate(token: str | None) -> ApiKey | None:
    """The usable key ``token`` stands for, or None."""
    check = check_api_key(token)
    return check.key if check.ok else None
