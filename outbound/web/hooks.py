"""Provider callbacks: SMS delivery receipts.

These endpoints are called by providers, not people: no session, no CSRF
token, but a signature (Twilio) or a shared secret (HTTP gateways) that must
match, else 403. A body larger than any receipt, or without the fields every
receipt has, gets 400. A receipt for an id we never sent is answered 200 and
logged, because providers retry anything else for hours.

The views only take the request apart and map the outcome to an answer;
checking and recording the receipt is ``services.receipts``'s job.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from outbound import conf
from outbound.models import Backend, BackendKind
from outbound.services import receipts

logger = logging.getLogger(__name__)

MAX_BODY = 64 * 1024


def _answer(status: int, message: str) -> JsonResponse:
    return JsonResponse({"ok": status == 200, "message": message}, status=status)


def _not_found(request: HttpRequest) -> JsonResponse:
    logger.info("receipt posted to %s, which names no backend of that kind", request.path)
    return _answer(404, "Not found.")


def _signed_url(request: HttpRequest) -> str:
    """The URL the provider signed: our public address when one is set (a
    proxy in front changes what Django sees), else the request's own."""
    base = conf.public_url()
    if base:
        return base + request.get_full_path()
    return request.build_absolute_uri()


def _outcome(receive: Callable[[], receipts.ReceiptResult]) -> JsonResponse:
    """Run the service and answer: 403 refused, 400 malformed, 200 otherwise."""
    try:
        result = receive()
    except receipts.ReceiptRefused as err:
        return _answer(403, str(err))
    except receipts.MalformedReceipt as err:
        return _answer(400, str(err))
    return _answer(200, result.text)


@csrf_exempt
@require_POST
def twilio_receipt(request: HttpRequest, backend_id: int) -> HttpResponse:
    backend = Backend.objects.filter(pk=backend_id, kind=BackendKind.TWILIO).first()
    if backend is None:
        return _not_found(request)
    if len(request.body) > MAX_BODY:
        return _answer(400, "The body is too large.")
    url = _signed_url(request)
    params = {key: request.POST.get(key, "") for key in request.POST}
    signature = request.headers.get("X-Twilio-Signature", "")
    return _outcome(
        lambda: receipts.receive_twilio_receipt(
            backend, url=url, params=params, signature=signature
        )
    )


@csrf_exempt
@require_POST
def http_receipt(request: HttpRequest, backend_id: int) -> HttpResponse:
    backend = Backend.objects.filter(pk=backend_id, kind=BackendKind.HTTP).first()
    if backend is None:
        return _not_found(request)
    if len(request.body) > MAX_BODY:
        return _answer(400, "The body is too large.")
    authorization = request.headers.get("Authorization", "")
    return _outcome(
        lambda: receipts.receive_gateway_receipt(
            backend, authorization=authorization, body=request.body
        )
    )
