"""The REST API instance: version 1, mounted at /api/v1/."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.urls import URLPattern, URLResolver
from ninja import NinjaAPI, Router
from ninja.operation import Operation

from outbound.api.errors import ApiError, envelope, install_error_handlers
from outbound.api.routers import directory, messages, system


def _enveloped_405(view: Callable[..., Any], api: NinjaAPI) -> Callable[..., Any]:
    """Wrap a route's view so a wrong method answers with the error envelope.

    django-ninja answers a method no operation of the path takes with a bare
    text 405 from its path view, before any exception handler runs; this
    rewrites only that response and keeps its Allow header.
    """

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        response = view(request, *args, **kwargs)
        if not isinstance(response, HttpResponseNotAllowed):
            return response
        allowed = sorted(m.strip() for m in response["Allow"].split(",") if m.strip())
        listed = ", ".join(allowed)
        enveloped: HttpResponse = api.create_response(
            request,
            envelope(
                "method_not_allowed",
                f"{request.method} is not allowed on {request.path}; use {listed}.",
                {"allowed_methods": allowed},
            ),
            status=405,
        )
        enveloped["Allow"] = listed
        return enveloped

    return wrapped


class OutboundApi(NinjaAPI):
    def get_openapi_operation_id(self, operation: Operation) -> str:
        """Name an operation after its view: `create_message`, `list_messages`.

        django-ninja's default joins the module path to the name
        (`outbound_api_routers_messages_create_message`), so a client
        generated from the schema renamed every function whenever a module
        moved. The views are named verb first for this; test_operations.py
        holds the list, so a rename is a deliberate change of the API.
        """
        return operation.view_func.__name__

    @property
    def urls(self) -> tuple[list[URLResolver | URLPattern], str, str]:
        patterns, app_name, namespace = super().urls
        wrapped: list[URLResolver | URLPattern] = [
            URLPattern(p.pattern, _enveloped_405(p.callback, self), p.default_args, p.name)
            if isinstance(p, URLPattern)
            else p
            for p in patterns
        ]
        return wrapped, app_name, namespace


api = OutboundApi(
    title="Outbound API",
    version="1",
    description=(
        "Queue email, follow each message's status and explanation, manage contacts, the "
        "blocklist and backends. Authenticate with an API key: `Authorization: Bearer <key>` "
        "or `X-API-Key: <key>`. Every error answers `{code, message, details}`."
    ),
    urls_namespace="api-v1",
)
install_error_handlers(api)
api.add_router("", messages.router)
api.add_router("", directory.router)
api.add_router("", system.router)


fallback = Router()


# Registered last so every real route wins: an unknown path under /api/v1/
# still answers with the envelope instead of Django's HTML page.
@fallback.api_operation(
    ["GET", "POST", "PUT", "PATCH", "DELETE"], "/{path:rest}", auth=None, include_in_schema=False
)
def unknown_path(request: HttpRequest, rest: str) -> None:
    raise ApiError(404, f"There is no API endpoint /api/v1/{rest}.")


api.add_router("", fallback)
