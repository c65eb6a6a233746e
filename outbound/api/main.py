"""The REST API instance: version 1, mounted at /api/v1/."""

from __future__ import annotations

from django.http import HttpRequest
from ninja import NinjaAPI, Router

from outbound.api.errors import ApiError, install_error_handlers
from outbound.api.routers import directory, messages, system

api = NinjaAPI(
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
