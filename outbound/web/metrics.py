"""/metrics: the Prometheus text format, open to loopback, elsewhere only
with `Authorization: Bearer $OUTBOUND_METRICS_TOKEN`.

Behind a proxy, `outbound serve` puts the client's address in REMOTE_ADDR
(from the trusted proxy's X-Forwarded-For), so a scrape forwarded by a
proxy on this host is not taken for a loopback one.
"""

from __future__ import annotations

import hmac
import ipaddress

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from outbound.metrics import OutboundCollector

# A registry of its own: the process's default one would add this web
# process's Python and GC figures, which say nothing about the workers.
registry = CollectorRegistry(auto_describe=False)
registry.register(OutboundCollector())


def _from_loopback(request: HttpRequest) -> bool:
    try:
        return ipaddress.ip_address(str(request.META.get("REMOTE_ADDR", ""))).is_loopback
    except ValueError:
        return False


def _token_matches(request: HttpRequest) -> bool:
    expected = str(getattr(settings, "OUTBOUND_METRICS_TOKEN", "") or "")
    given = str(request.headers.get("Authorization", ""))
    if not expected or not given.startswith("Bearer "):
        return False
    # Constant time: the comparison must not tell how much of a guess was right.
    return hmac.compare_digest(given[len("Bearer ") :].encode(), expected.encode())


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    if not (_from_loopback(request) or _token_matches(request)):
        response = HttpResponse(
            "401 Unauthorized: /metrics answers loopback, or a scrape with "
            "Authorization: Bearer $OUTBOUND_METRICS_TOKEN.\n",
            status=401,
            content_type="text/plain; charset=utf-8",
        )
        response["WWW-Authenticate"] = 'Bearer realm="outbound-metrics"'
        return response
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
