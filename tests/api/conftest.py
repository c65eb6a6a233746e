from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client


@pytest.fixture(autouse=True)
def _fresh_rate_limits() -> None:
    cache.clear()


class Api:
    """A test client speaking JSON to /api/v1 with one key."""

    def __init__(self, client: Client, key: str | None) -> None:
        self.client = client
        self.key = key

    def _headers(self, extra: dict[str, str] | None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.key}"} if self.key else {}
        headers.update(extra or {})
        return headers

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | str | None = None,
        headers: dict[str, str] | None = None,
        **query: Any,
    ) -> Any:
        import json

        url = "/api/v1" + path
        data: Any = raw if raw is not None else (json.dumps(body) if body is not None else None)
        fn = getattr(self.client, method.lower())
        kwargs: dict[str, Any] = {"headers": self._headers(headers)}
        if method.upper() == "GET":
            return fn(url, query, **kwargs)
        if data is not None:
            kwargs.update(data=data, content_type="application/json")
        return fn(url, **kwargs)

    def get(self, path: str, **query: Any) -> Any:
        return self.call("GET", path, **query)

    def post(self, path: str, body: Any = None, **kw: Any) -> Any:
        return self.call("POST", path, body, **kw)

    def patch(self, path: str, body: Any = None, **kw: Any) -> Any:
        return self.call("PATCH", path, body, **kw)

    def put(self, path: str, body: Any = None, **kw: Any) -> Any:
        return self.call("PUT", path, body, **kw)

    def delete(self, path: str, **kw: Any) -> Any:
        return self.call("DELETE", path, **kw)


@pytest.fixture
def make_key(db: None) -> Callable[..., str]:
    from outbound.services.apikeys import create_api_key

    def factory(scope: str = "admin", **kw: Any) -> str:
        _, plaintext = create_api_key(name=f"test {scope}", scope=scope, actor="test", **kw)
        return plaintext

    return factory


@pytest.fixture
def api(make_key: Callable[..., str]) -> Api:
    return Api(Client(), make_key("admin"))


@pytest.fixture
def anon(db: None) -> Api:
    return Api(Client(), None)


@pytest.fixture
def api_as(make_key: Callable[..., str]) -> Callable[[str], Api]:
    return lambda scope: Api(Client(), make_key(scope))


def assert_error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"code", "message", "details"}, body
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["details"], dict)
    if code is not None:
        assert body["code"] == code, body
    return body
