"""The API's one error envelope and the handlers that produce it.

Every failure, whatever raised it, answers ``{"code", "message", "details"}``
with a status code a client can act on; bad input never reaches Django's 500
page.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import ObjectDoesNotExist, RequestDataTooBig
from django.db import OperationalError
from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, Throttled, ValidationError

from outbound.busy import BUSY_TEXT, RETRY_AFTER_SECONDS, is_busy
from outbound.errors import (
    HeaderInjection,
    IdempotencyConflict,
    IntakeError,
    InvalidInput,
    InvalidTransition,
    NotFound,
    OutboundError,
    UnknownContact,
)

logger = logging.getLogger(__name__)

# Status code -> the code a client sees when nothing more specific applies.
DEFAULT_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    422: "invalid_input",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}


class ApiError(Exception):
    """Raised by the API's own code for an answer that is not a success."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str = "",
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or DEFAULT_CODES.get(status, "error")
        self.message = message
        self.details = details or {}
        self.headers = headers or {}


def envelope(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"code": code, "message": message, "details": details or {}}


def _respond(
    api: NinjaAPI,
    request: HttpRequest,
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> HttpResponse:
    response = api.create_response(request, envelope(code, message, details), status=status)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def _field_name(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc]
    # ninja prefixes the source ("body", "query") and the body parameter's
    # name; a client knows its own field names, not ours.
    if parts and parts[0] in {"body", "query", "path", "header", "cookie", "form"}:
        source = parts.pop(0)
        if source == "body" and parts and parts[0] == "payload":
            parts.pop(0)
    return ".".join(parts) or "__all__"


def validation_details(errors: list[dict[str, Any]]) -> dict[str, list[str]]:
    details: dict[str, list[str]] = {}
    for error in errors:
        name = _field_name(error.get("loc", ()))
        text = str(error.get("msg", "Invalid value."))
        if error.get("type") == "extra_forbidden":
            text = "Unknown field."
        details.setdefault(name, []).append(text)
    return details


def install_error_handlers(api: NinjaAPI) -> None:
    def on_api_error(request: HttpRequest, exc: ApiError) -> HttpResponse:
        return _respond(api, request, exc.status, exc.code, exc.message, exc.details, exc.headers)

    def on_validation(request: HttpRequest, exc: ValidationError) -> HttpResponse:
        details = validation_details(list(exc.errors))
        summary = "; ".join(f"{k}: {' '.join(v)}" for k, v in details.items())
        return _respond(
            api, request, 422, "invalid_input", f"The input is not valid: {summary}", details
        )

    def on_authentication(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
        return _respond(
            api,
            request,
            401,
            "unauthenticated",
            "An API key is required: send it as 'Authorization: Bearer <key>' or 'X-API-Key'.",
            headers={"WWW-Authenticate": 'Bearer realm="outbound"'},
        )

    def on_throttled(request: HttpRequest, exc: Throttled) -> HttpResponse:
        wait = int(exc.wait or 60)
        return _respond(
            api,
            request,
            429,
            "rate_limited",
            f"Too many requests; try again in {wait} s.",
            {"retry_after": wait},
            {"Retry-After": str(wait)},
        )

    def on_http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
        status = exc.status_code
        message = str(exc)
        if status == 400 and message.startswith("Cannot parse request body"):
            return _respond(
                api, request, 400, "malformed_json", "The request body is not valid JSON."
            )
        if status == 403 and "CSRF" in message:
            return _respond(
                api,
                request,
                403,
                "csrf_failed",
                "The CSRF check failed: send the console's CSRF token with the session cookie.",
            )
        return _respond(api, request, status, DEFAULT_CODES.get(status, "error"), message)

    def on_not_found(request: HttpRequest, exc: Exception) -> HttpResponse:
        message = str(exc) if isinstance(exc, NotFound) and str(exc) else "Not found."
        return _respond(api, request, 404, "not_found", message)

    def on_too_big(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
        return _respond(api, request, 413, "payload_too_large", "The request body is too large.")

    def on_invalid_input(request: HttpRequest, exc: InvalidInput) -> HttpResponse:
        return _respond(api, request, 422, "invalid_input", str(exc), exc.errors)

    def on_unknown_contact(request: HttpRequest, exc: UnknownContact) -> HttpResponse:
        return _respond(api, request, 422, "unknown_contact", str(exc), {"contact": [str(exc)]})

    def on_idempotency(request: HttpRequest, exc: IdempotencyConflict) -> HttpResponse:
        return _respond(
            api,
            request,
            409,
            "idempotency_conflict",
            str(exc),
            {"Idempotency-Key": [str(exc)]},
        )

    def _where(exc: IntakeError) -> dict[str, list[str]] | None:
        # In a batch, say which message was refused; name the field refused.
        where = [f"messages.{exc.index}"] if exc.index is not None else []
        if exc.field:
            where.append(exc.field)
        return {".".join(where): [str(exc)]} if where else None

    def on_header_injection(request: HttpRequest, exc: HeaderInjection) -> HttpResponse:
        return _respond(api, request, 422, "header_injection", str(exc), _where(exc))

    def on_intake(request: HttpRequest, exc: IntakeError) -> HttpResponse:
        return _respond(api, request, 422, "invalid_input", str(exc), _where(exc))

    def on_transition(request: HttpRequest, exc: InvalidTransition) -> HttpResponse:
        return _respond(api, request, 409, "state_conflict", str(exc))

    def on_outbound(request: HttpRequest, exc: OutboundError) -> HttpResponse:
        return _respond(api, request, 422, "refused", str(exc) or type(exc).__name__)

    def on_database(request: HttpRequest, exc: OperationalError) -> HttpResponse:
        if not is_busy(exc):
            return on_unexpected(request, exc)
        logger.warning("database busy on %s %s: answered 503", request.method, request.path)
        return _respond(
            api,
            request,
            503,
            "database_busy",
            BUSY_TEXT,
            {"retry_after": RETRY_AFTER_SECONDS},
            {"Retry-After": str(RETRY_AFTER_SECONDS)},
        )

    def on_unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
        # The one broad catch of the API: a client still gets the envelope,
        # and the traceback goes to the log, not to the client.
        logger.exception("API error on %s %s", request.method, request.path)
        return _respond(
            api, request, 500, "internal_error", "An unexpected error occurred; it was logged."
        )

    handlers: list[tuple[type[Exception], Any]] = [
        (Exception, on_unexpected),
        (ApiError, on_api_error),
        (ValidationError, on_validation),
        (AuthenticationError, on_authentication),
        (Throttled, on_throttled),
        (HttpError, on_http_error),
        (Http404, on_not_found),
        (ObjectDoesNotExist, on_not_found),
        (NotFound, on_not_found),
        (RequestDataTooBig, on_too_big),
        (InvalidInput, on_invalid_input),
        (UnknownContact, on_unknown_contact),
        (IdempotencyConflict, on_idempotency),
        (HeaderInjection, on_header_injection),
        (IntakeError, on_intake),
        (InvalidTransition, on_transition),
        (OutboundError, on_outbound),
        (OperationalError, on_database),
    ]
    for exc_class, handler in handlers:
        api.add_exception_handler(exc_class, handler)
