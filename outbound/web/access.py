"""The console's access check: every page and action goes through
``require_role`` (see outbound/permissions.py for why being logged in is
not enough)."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse

from outbound.permissions import has_role

View = Callable[..., HttpResponse]

NO_ROLE = (
    "Your account has no Outbound role. An Outbound administrator can add it to the "
    "Viewer, Operator or Administrator group."
)


def require_role(*perms: str) -> Callable[[View], View]:
    """Login, then one of Outbound's roles, then every permission in ``perms``.

    An anonymous visitor gets the login page; a signed-in user without a role
    (a customer of the platform, say) gets 403 before the view reads anything.
    """

    def decorator(view: View) -> View:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not has_role(request.user):
                raise PermissionDenied(NO_ROLE)
            for perm in perms:
                if not request.user.has_perm(perm):
                    raise PermissionDenied(f"You need the permission {perm} to do this.")
            return view(request, *args, **kwargs)

        return login_required(wrapped)

    return decorator
