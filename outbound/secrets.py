"""Secrets at rest: SMTP passwords and API tokens, encrypted with MultiFernet.

Keys come from ``OUTBOUND_SECRET_KEYS`` (comma separated, newest first) so a
new key can be added in front and old ciphertexts still read, then
re-encrypted with ``outbound rotate-secrets``. Without configured keys a key
is derived from Django's SECRET_KEY when that is a key of the deployment's
own (said in the logs), and never from the development default written in the
repository: then nothing can be encrypted or read. With DEBUG off the system
checks (outbound/checks.py) refuse to start without OUTBOUND_SECRET_KEYS.
"""

from __future__ import annotations

import base64
import hashlib
import logging

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from outbound import conf
from outbound.errors import SecretError

logger = logging.getLogger(__name__)
_warned = False


def _fernet() -> MultiFernet:
    global _warned
    keys = conf.secret_keys()
    if not keys and conf.django_secret_key() == conf.default_secret_key():
        raise SecretError(
            "OUTBOUND_SECRET_KEYS is not set and DJANGO_SECRET_KEY is the public development "
            "key, so no secret can be encrypted or read: make keys with "
            "`outbound generate-keys` and set them in the environment."
        )
    if not keys:
        if not _warned:
            logger.warning(
                "OUTBOUND_SECRET_KEYS is not set; secrets are encrypted with a key "
                "derived from DJANGO_SECRET_KEY"
            )
            _warned = True
        digest = hashlib.sha256(b"outbound-secrets:" + conf.django_secret_key().encode()).digest()
        keys = [base64.urlsafe_b64encode(digest).decode()]
    try:
        return MultiFernet([Fernet(k.encode()) for k in keys])
    except ValueError as err:
        raise SecretError("OUTBOUND_SECRET_KEYS holds a key that is not a Fernet key") from err


def encrypt(value: str) -> str:
    if not value:
        return ""
    return _fernet().encrypt(value.encode()).decode()


def decrypt(token: str, *, owner: str = "") -> str:
    if not token:
        return ""
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken as err:
        where = f" of {owner}" if owner else ""
        raise SecretError(
            f"The stored secret{where} cannot be decrypted: it was altered, or the key "
            "that encrypted it is no longer in OUTBOUND_SECRET_KEYS. Enter the secret again."
        ) from err


def rotate(token: str) -> str:
    """Re-encrypt under the newest key."""
    if not token:
        return ""
    try:
        return _fernet().rotate(token.encode()).decode()
    except InvalidToken as err:
        raise SecretError("a stored secret cannot be decrypted with the configured keys") from err


def generate_key() -> str:
    return Fernet.generate_key().decode()
