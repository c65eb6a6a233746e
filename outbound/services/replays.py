"""Idempotent API requests: the first answer is kept and given again.

Contract: ``answer_once`` looks up the answer stored for ``(owner, key)``.
Found with the same operation and request hash, it is returned as a replay;
found with anything else, ``IdempotencyConflict`` is raised and nothing is
written. Not found, ``produce`` runs (it makes its writes through the other
services and returns the status code and JSON body) and its answer is stored
in the same transaction, so the created rows and the stored answer commit
together or not at all. If ``produce`` raises, nothing is stored and the key
stays free for a corrected request. Of two first requests racing on one key,
the unique ``(owner, key)`` lets one commit; the other is rolled back whole
and answers with the winner's stored answer.

``prune_replays`` forgets answers older than ``REPLAY_TTL``; the worker calls
it in its periodic housekeeping.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from outbound.errors import IdempotencyConflict
from outbound.models import ApiReplay

logger = logging.getLogger(__name__)

REPLAY_TTL = timedelta(hours=24)


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any
    replayed: bool


def request_hash(body: bytes) -> str:
    """The hash of a JSON request body, blind to key order and whitespace."""
    try:
        canonical = json.dumps(
            json.loads(body or b"null"), sort_keys=True, separators=(",", ":")
        ).encode()
    except (ValueError, UnicodeDecodeError):
        canonical = body
    return hashlib.sha256(canonical).hexdigest()


def _stored(*, owner: str, key: str, method: str, path: str, request_hash: str) -> ApiReplay | None:
    stored = ApiReplay.objects.filter(owner=owner, idempotency_key=key).first()
    if stored is None:
        return None
    if (stored.method, stored.path, stored.request_hash) != (method, path, request_hash):
        what = (
            "a different request body"
            if (stored.method, stored.path) == (method, path)
            else f"{stored.method} {stored.path}"
        )
        raise IdempotencyConflict(
            f"The Idempotency-Key {key!r} was already used with {what}; "
            "use a new key for a new request."
        )
    return stored


def answer_once(
    *,
    owner: str,
    key: str,
    method: str,
    path: str,
    request_hash: str,
    produce: Callable[[], tuple[int, Any]],
) -> Answer:
    """The stored answer for this request, or ``produce()``'s, stored."""
    found = _stored(owner=owner, key=key, method=method, path=path, request_hash=request_hash)
    if found is not None:
        return Answer(found.status_code, found.body, replayed=True)
    try:
        with transaction.atomic():
            status, body = produce()
            ApiReplay.objects.create(
                owner=owner,
                idempotency_key=key,
                method=method,
                path=path,
                request_hash=request_hash,
                status_code=status,
                body=body,
            )
    except IntegrityError:
        # Another request with this key committed first; everything this one
        # wrote is rolled back. If the key is not there, the error was another.
        found = _stored(owner=owner, key=key, method=method, path=path, request_hash=request_hash)
        if found is None:
            raise
        logger.info("idempotency key race for %s: answering with the first response", owner)
        return Answer(found.status_code, found.body, replayed=True)
    return Answer(status, body, replayed=False)


def prune_replays(*, older_than: timedelta = REPLAY_TTL) -> int:
    """Forget stored answers older than ``older_than``; return how many."""
    deleted, _ = ApiReplay.objects.filter(created_at__lt=timezone.now() - older_than).delete()
    return deleted
