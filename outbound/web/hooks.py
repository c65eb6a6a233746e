"""Provider callbacks: SMS delivery receipts.

These endpoints are called by providers, not people: no session, no CSRF
token, but a signature (Twilio) or a shared secret (HTTP gateways) that must
match, else 403. A body without the fields every receipt has gets 400. A
receipt for an id we never sent is answered 200 and logged, because providers
retry anything else for hours.
"""

from __future__ import annotations

import hmac
import json
import logging

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from twilio.request_validator import RequestValidator

from outbound import conf, secrets
from outbound.models import Backend, BackendKind
from outbound.services import receipts

logger = logging.getLogger(__name__)

MAX_BODY = 64 * 1024


def _answer(status: int, message: str) -> JsonResponse:
    return JsonResponse({"ok": status == 200, "message": message}, status=status)


def _signed_url(request: HttpRequest) -> str:
    """The URL the provider signed: our public address when one is set (a
    proxy in front changes what Django sees), else the request's own."""
    base = conf.public_url()
    if base:
        return base + request.get_full_path()
    return request.build_absolute_uri()


def _record(backend: Backend, provider_id: object, status: object, code: object) -> JsonResponse:
    try:
        sid, state, error = receipts.check_receipt(provider_id, status, code)
    except receipts.MalformedReceipt as err:
        return _answer(400, str(err))
    result = receipts.record_receipt(backend, provider_id=sid, status=state, error_code=error)
    return _answer(200, result.text)


@csrf_exempt
@require_POST
def twilio_receipt(request: HttpRequest, backend_id: int) -> HttpResponse:
    backend = Backend.objects.filter(pk=backend_id, kind=BackendKind.TWILIO).first()
    if backend is None:
        return _answer(404, f"There is no Twilio backend {backend_id}.")
    if len(request.body) > MAX_BODY:
        return _answer(400, "The body is too large.")
    try:
        token = secrets.decrypt(backend.secret, owner=f"backend {backend.name}")
    except secrets.SecretError:
        logger.error("receipt for backend %s refused: its secret cannot be read", backend.name)
        return _answer(403, "The receipt cannot be checked.")
    signature = request.headers.get("X-Twilio-Signature", "")
    params = {key: request.POST.get(key, "") for key in request.POST}
    if (
        not token
        or not signature
        or not RequestValidator(token).validate(_signed_url(request), params, signature)
    ):
        logger.warning("receipt for backend %s refused: bad signature", backend.name)
        return _answer(403, "The request signature does not match.")
    return _record(
        backend,
        request.POST.get("MessageSid"),
        request.POST.get("MessageStatus") or request.POST.get("SmsStatus"),
        request.POST.get("ErrorCode"),
    )


@csrf_exempt
@require_POST
def http_receipt(request: HttpRequest, backend_id: int) -> HttpResponse:
    backend = Backend.objects.filter(pk=backend_id, kind=BackendKind.HTTP).first()
    if backend is None:
        return _answer(404, f"There is no HTTP gateway backend {backend_id}.")
    try:
        expected = secrets.decrypt(backend.receipt_secret, owner=f"backend {backend.name}")
    except secrets.SecretError:
        logger.error("receipt for backend %s refused: its secret cannot be read", backend.name)
        return _answer(403, "The receipt cannot be checked.")
    given = request.headers.get("Authorization", "")
    if not expected or not hmac.compare_digest(given.encode(), f"Bearer {expected}".encode()):
        logger.warning("receipt for backend %s refused: wrong shared secret", backend.name)
        return _answer(403, "The shared secret does not match.")
    if len(request.body) > MAX_BODY:
        return _answer(400, "The body is too large.")
    try:
        body = json.loads(request.body)
    except ValueError:
        return _answer(400, "The body is not JSON.")
    if not isinstance(body, dict):
        return _answer(400, 'The body must be a JSON object: {"id": ..., "status": ...}.')
    return _record(backend, body.get("id"), body.get("status"), body.get("error_code"))
