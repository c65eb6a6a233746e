"""Who is calling the API and what they may do.

Scripts present an API key (``Authorization: Bearer <key>`` or ``X-API-Key``);
the console's own pages use the logged-in session, with Django's CSRF check on
unsafe methods. Each operation names the scope it needs; a key or user below
it gets 403, a missing or unusable key 401 with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from ninja.security import APIKeyCookie, APIKeyHeader, HttpBearer

from outbound.api.errors import ApiError
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


def user_scope(user: Any) -> str:
    """The scope a console user has, from the roles (groups) of issue 2."""
    if user.is_superuser or user.has_perm("outbound.change_backend"):
        return "admin"
    if user.has_perm("outbound.operate_messages"):
        return "write"
    return "read"


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
    param_name = settings.SESSION_COOKIE_NAME

    def __init__(self, scope: str) -> None:
        self.scope = scope
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
        scope = user_scope(user)
        if not scope_allows(scope, self.scope):
            raise ApiError(
                403,
                f"Your role does not allow this (it needs the {self.scope} scope).",
                code="insufficient_scope",
                details={"needed_scope": self.scope, "user_scope": scope},
            )
        return Principal(kind="user", name=user.get_username(), scope=scope)


def require(scope: str) -> list[Any]:
    """The auth callbacks for an operation that needs ``scope``."""
    return [BearerKey(scope), HeaderKey(scope), ConsoleSession(scope)]


READ = require("read")
WRITE = require("write")
ADMIN = require("admin")


def principal(request: HttpRequest) -> Principal:
    auth = getattr(request, "auth", None)
    if not isinstance(auth, Principal):  # pragma: no cover - every route has auth
        raise ApiError(401, "Not authenticated.")
    return auth
