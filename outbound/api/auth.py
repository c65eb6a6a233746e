"""Who is calling the API and what they may do.

Scripts present an API key (``Authorization: Bearer <key>`` or ``X-API-Key``);
the console's own pages use the logged-in session, with Django's CSRF check on
unsafe methods. Each operation names the scope a key needs and the Outbound
permissions a console user needs; a key or user below it gets 403, a missing
or unusable key 401 with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from ninja.security import APIKeyCookie, APIKeyHeader, HttpBearer

from outbound.api.errors import ApiError
from outbound.permissions import (
    ADD_BACKEND,
    ADD_BLOCK,
    ADD_CONTACT,
    ADMINISTER,
    CHANGE_BACKEND,
    DELETE_BLOCK,
    DELETE_CONTACT,
    EDIT_CONTACT,
    OPERATE,
    VIEW,
    has_role,
)
from outbound.services.apikeys import check_api_key, scope_allows

PROBLEMS = {
    "invalid": "The API key is not valid.",
    "revoked": "The API key was revoked.",
    "expired": "The API key has expired.",
}


@dataclass(frozen=True)
class Principal:
    kind: str  # "key" or "user"
    name: str
    scope: str
    key_id: int | None = None

    @property
    def actor(self) -> str:
        return f"api key {self.name}" if self.kind == "key" else self.name

    @property
    def rate_key(self) -> str:
        return f"key:{self.key_id}" if self.kind == "key" else f"user:{self.name}"


def _from_key(token: str | None, needed: str) -> Principal:
    check = check_api_key(token)
    if not check.ok or check.key is None:
        raise ApiError(
            401,
            PROBLEMS.get(check.problem, "The API key is not valid."),
            code=f"key_{check.problem}",
            headers={"WWW-Authenticate": 'Bearer realm="outbound", error="invalid_token"'},
        )
    key = check.key
    if not scope_allows(key.scope, needed):
        raise ApiError(
            403,
            f"This needs a key with the {needed} scope; the key {key.prefix} has {key.scope}.",
            code="insufficient_scope",
            details={"needed_scope": needed, "key_scope": key.scope},
        )
    return Principal(kind="key", name=key.name, scope=key.scope, key_id=key.pk)


class BearerKey(HttpBearer):
    def __init__(self, scope: str) -> None:
        self.scope = scope
        super().__init__()

    def authenticate(self, request: HttpRequest, token: str) -> Principal:
        return _from_key(token, self.scope)


class HeaderKey(APIKeyHeader):
    param_name = "X-API-Key"

    def __init__(self, scope: str) -> None:
        self.scope = scope
        super().__init__()

    def authenticate(self, request: HttpRequest, key: str | None) -> Principal | None:
        if key is None:
            return None
        return _from_key(key, self.scope)


class ConsoleSession(APIKeyCookie):
    """A console user: allowed exactly what the console allows them.

    Scopes belong to keys; a user is judged by Outbound's permissions, the
    same ones the console's pages check (outbound/permissions.py): a role for
    anything at all, then the operation's own permissions. Mapping a user
    onto a key scope let ``change_backend`` alone reach the global settings.
    """

    param_name = settings.SESSION_COOKIE_NAME

    def __init__(self, scope: str, perms: tuple[str, ...]) -> None:
        self.scope = scope
        self.perms = perms
        super().__init__(csrf=True)

    def _get_key(self, request: HttpRequest) -> str | None:
        # Without a session cookie this is not a console call: let the answer
        # be "key required" rather than a confusing CSRF failure.
        if not request.COOKIES.get(self.param_name):
            return None
        return super()._get_key(request)

    def authenticate(self, request: HttpRequest, key: str | None) -> Principal | None:
        user = getattr(request, "user", None)
        if key is None or user is None or not user.is_authenticated or not user.is_active:
            return None
        if not has_role(user):
            raise ApiError(
                403,
                "Your account has no Outbound role; an Outbound administrator can add it to "
                "the Viewer, Operator or Administrator group.",
                code="no_role",
                details={"needed_permission": VIEW},
            )
        missing = [p for p in self.perms if not user.has_perm(p)]
        if missing:
            raise ApiError(
                403,
                f"Your role does not allow this (it needs the permission {missing[0]}).",
                code="insufficient_scope",
                details={"needed_permissions": missing},
            )
        return Principal(kind="user", name=user.get_username(), scope=self.scope)


def require(scope: str, *perms: str) -> list[Any]:
    """The auth callbacks for an operation: a key needs ``scope``; a console
    user needs a role and ``perms``, what the console asks for the same act."""
    return [BearerKey(scope), HeaderKey(scope), ConsoleSession(scope, perms)]


READ = require("read")
# Operations on messages (queue, re-send, cancel, send outgoing).
WRITE = require("write", OPERATE)
ADD_CONTACTS = require("write", ADD_CONTACT)
EDIT_CONTACTS = require("write", EDIT_CONTACT)
UPSERT_CONTACTS = require("write", ADD_CONTACT, EDIT_CONTACT)
DELETE_CONTACTS = require("write", DELETE_CONTACT)
ADD_BLOCKS = require("write", ADD_BLOCK)
DELETE_BLOCKS = require("write", DELETE_BLOCK)
ADD_BACKENDS = require("admin", ADD_BACKEND)
CHANGE_BACKENDS = require("admin", CHANGE_BACKEND)
# The global settings (and anything else an administrator alone does).
ADMIN = require("admin", ADMINISTER)


def principal(request: HttpRequest) -> Principal:
    auth = getattr(request, "auth", None)
    if not isinstance(auth, Principal):  # pragma: no cover - every route has auth
        raise ApiError(401, "Not authenticated.")
    return auth
