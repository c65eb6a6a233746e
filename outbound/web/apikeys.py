"""Console pages for API keys: list, create (the secret is shown once, in the
response to the POST that made it, never stored or put in the session), and
revoke after a confirmation page. Only administrators (the role that may
change the global settings) see or use them: an admin-scope key is as
powerful as the settings page. Every change goes through
``outbound.services.apikeys``, which writes the audit entry."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any

from django import forms
from django.contrib import messages as flash
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from outbound.errors import InvalidInput
from outbound.models import ApiKey
from outbound.permissions import ADMINISTER
from outbound.services.apikeys import create_api_key, revoke_api_key
from outbound.web.access import require_role
from outbound.web.forms import ServiceErrorsMixin

# The permission only the Administrator role has (migrations/0002_roles.py).
MANAGE_KEYS = ADMINISTER


class ApiKeyForm(ServiceErrorsMixin, forms.Form):
    name = forms.CharField(
        max_length=100,
        help_text="Who or what uses the key, e.g. “Workflow platform (production)”.",
    )
    scope = forms.ChoiceField(
        choices=ApiKey.Scope.choices,
        initial=ApiKey.Scope.READ,
        help_text="Read: lists and details. Write: also sends, re-sends, cancels, contacts "
        "and the blocklist. Admin: also backends and global settings.",
    )
    expires_on = forms.DateField(
        required=False,
        label="Valid until (optional)",
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="The key stops working at the end of this day. Empty: until revoked.",
    )

    def expires_at(self) -> datetime | None:
        day: date | None = self.cleaned_data.get("expires_on")
        if day is None:
            return None
        # End of the chosen day in the console's time zone.
        return timezone.make_aware(datetime.combine(day + timedelta(days=1), time.min))

    def add_service_errors(self, err: InvalidInput) -> None:
        errors = dict(err.errors)
        if "expires_at" in errors:
            errors["expires_on"] = errors.pop("expires_at")
        super().add_service_errors(InvalidInput(errors))


def _check(request: HttpRequest) -> None:
    if not request.user.has_perm(MANAGE_KEYS):
        raise PermissionDenied("Only administrators may see and manage API keys.")


def _key_state(key: ApiKey, now: datetime) -> str:
    if key.revoked_at is not None:
        return "revoked"
    if key.expires_at is not None and key.expires_at <= now:
        return "expired"
    return "active"


def _page(
    request: HttpRequest,
    form: ApiKeyForm,
    *,
    created: tuple[ApiKey, str] | None = None,
) -> HttpResponse:
    now = timezone.now()
    keys = list(ApiKey.objects.all())
    for key in keys:
        key.state = _key_state(key, now)  # type: ignore[attr-defined]
    context: dict[str, Any] = {"form": form, "keys": keys}
    if created is not None:
        context["new_key"], context["new_secret"] = created
    return render(request, "outbound/apikeys.html", context)


@never_cache  # the response to a creation carries the secret
@require_role()
@require_http_methods(["GET", "POST"])
def apikey_list(request: HttpRequest) -> HttpResponse:
    _check(request)
    if request.method != "POST":
        return _page(request, ApiKeyForm())
    form = ApiKeyForm(request.POST)
    if form.is_valid():
        try:
            key, secret = create_api_key(
                name=form.cleaned_data["name"],
                scope=form.cleaned_data["scope"],
                expires_at=form.expires_at(),
                actor=request.user.get_username(),
            )
        except InvalidInput as err:
            form.add_service_errors(err)
        else:
            # Rendered, not redirected: the secret must not travel through the
            # session or a URL, and this is the only time it exists in clear.
            return _page(request, ApiKeyForm(), created=(key, secret))
    return _page(request, form)


@require_role()
@require_http_methods(["GET", "POST"])
def apikey_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    """GET asks for confirmation; POST (with the CSRF token) revokes."""
    _check(request)
    key = get_object_or_404(ApiKey, pk=pk)
    if request.method != "POST":
        return render(
            request,
            "outbound/apikey_revoke.html",
            {"key": key, "state": _key_state(key, timezone.now())},
        )
    if revoke_api_key(key, actor=request.user.get_username()):
        flash.success(
            request, f"API key {key.prefix} ({key.name}) revoked: it is refused from now on."
        )
    else:
        flash.warning(request, f"API key {key.prefix} ({key.name}) was already revoked.")
    return redirect("outbound:apikeys")
