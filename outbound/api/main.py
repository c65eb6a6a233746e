"""The REST API instance: version 1, mounted at /api/v1/."""

from __future__ import annotations

from ninja import NinjaAPI

from outbound.api.errors import install_error_handlers
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
