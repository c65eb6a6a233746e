"""The HTML part of a message as its recipient would see it, shown in a
sandboxed frame on the message page.

A message's HTML is written by the platform or by whoever can queue a
message, so it is untrusted: it is served from its own URL with a policy of
its own, stricter than the console's. The frame is ``sandbox=""`` (no
script, no form, no navigation of the console). By default nothing is
fetched from elsewhere: a remote image could tell its sender that an
operator opened the message, and when. The message's own inline styles and
``data:`` images are shown. An operator who wants to see the remote images
and style sheets asks for them (``?remote=1``, the page's *Load remote
images and styles*); that answer allows them, still without any script.

The console's policy cannot serve here: a ``srcdoc`` frame inherits its
parent's policy, which forbids the inline styles every email uses."""

from __future__ import annotations

from typing import Any

from csp.decorators import csp
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.clickjacking import xframe_options_sameorigin
from django.views.decorators.http import require_GET

from outbound.models import Message
from outbound.web.access import require_role

_COMMON: dict[str, list[str]] = {
    "default-src": ["'none'"],
    "script-src": ["'none'"],
    "frame-ancestors": ["'self'"],
    "form-action": ["'none'"],
    "base-uri": ["'none'"],
    "object-src": ["'none'"],
}
# django-csp's decorator takes the directives themselves.
LOCAL_ONLY: dict[str, Any] = {
    **_COMMON,
    "style-src": ["'unsafe-inline'"],
    "img-src": ["data:"],
    "font-src": ["data:"],
}
WITH_REMOTE: dict[str, Any] = {
    **_COMMON,
    "style-src": ["'unsafe-inline'", "https:", "http:"],
    "img-src": ["data:", "https:", "http:"],
    "font-src": ["data:", "https:", "http:"],
}


def _body(html: str) -> HttpResponse:
    response = HttpResponse(html, content_type="text/html; charset=utf-8")
    response["Referrer-Policy"] = "no-referrer"
    response["Cache-Control"] = "private, no-store"
    return response


@require_role()
@require_GET
@xframe_options_sameorigin
def message_html(request: HttpRequest, pk: int) -> HttpResponse:
    message = get_object_or_404(Message.objects.only("id", "html_body"), pk=pk)
    policy = WITH_REMOTE if request.GET.get("remote") == "1" else LOCAL_ONLY
    # django-csp's decorator is how a view states a policy of its own.
    answer = csp(policy)(lambda _request: _body(message.html_body))(request)
    assert isinstance(answer, HttpResponse)
    return answer
