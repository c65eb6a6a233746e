"""Outbound's own permissions, the one list the console, the API and the
admin check against.

Outbound often runs inside the platform's project, so the platform's end
users share Django's user table. Being logged in therefore proves nothing:
every page, download and API operation needs ``VIEW`` (held by the Viewer,
Operator and Administrator groups of migrations 0002 and 0016; superusers
hold every permission), and an action needs its own permission on top.
"""

from __future__ import annotations

from typing import Any

VIEW = "outbound.view_outbound"
OPERATE = "outbound.operate_messages"
ADD_CONTACT = "outbound.add_contact"
EDIT_CONTACT = "outbound.change_contact"
# No role holds it: the console deletes no contact (a superuser may, by the API).
DELETE_CONTACT = "outbound.delete_contact"
ADD_BLOCK = "outbound.add_suppression"
DELETE_BLOCK = "outbound.delete_suppression"
ADD_BACKEND = "outbound.add_backend"
CHANGE_BACKEND = "outbound.change_backend"
ADMINISTER = "outbound.change_globalsettings"


def has_role(user: Any) -> bool:
    """Whether ``user`` holds one of Outbound's roles (may see anything at all)."""
    return bool(
        user is not None and user.is_authenticated and user.is_active and user.has_perm(VIEW)
    )


def allows(user: Any, *perms: str) -> bool:
    """Whether ``user`` has a role and every one of ``perms``."""
    return has_role(user) and all(user.has_perm(p) for p in perms)
