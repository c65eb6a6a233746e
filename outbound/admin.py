"""Django's admin as a read-only view of the raw rows.

Every write to the outbox goes through the services (outbound/services/):
statuses change only through transitions.apply_changes, with an Event row
for each decision; contacts and blocklist entries are checked by the same
code for the console, the API and the CLI. A model form here would write
past all of that, so nothing registered below can be added, changed or
deleted from the admin. Each page says where in the console the same data
is edited. Backends, API keys and the global settings are not registered at
all: they hold secrets (or their hashes) that no page may show, and the
console's Settings page edits them.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.html import format_html

from outbound import models, selectors
from outbound.permissions import has_role

admin.site.site_header = "Outbound raw data (read-only)"
admin.site.site_title = "Outbound raw data"
admin.site.index_title = (
    "Read-only view of the stored rows. Messages, contacts, the blocklist and the "
    "settings are changed in the Outgoing messages console."
)
admin.site.site_url = "/"


class ViewOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ViewOnlyAdmin(admin.ModelAdmin):
    """Lists and shows rows; refuses add, change and delete (Django answers
    403 to those URLs, and the bulk delete action is not offered)."""

    # Where the console edits (or shows) this model, and what to say there.
    console_url_name = "outbound:home"
    console_note = ""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    # The admin is staff-only, but a platform's staff are not Outbound's
    # operators: the rows (message bodies among them) also need Outbound's role.
    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return has_role(request.user) and super().has_view_permission(request, obj)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return has_role(request.user) and super().has_module_permission(request)

    def console_url(self, obj: Model | None) -> str:
        return reverse(self.console_url_name)

    @admin.display(description="In the console")
    def in_console(self, obj: Model) -> str:
        url = self.console_url(obj)
        return format_html('<a href="{}">{}</a>', url, url)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        # The link to the console first, then the stored fields.
        fields = [f for f in super().get_fields(request, obj) if f != "in_console"]
        return ["in_console", *fields]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return ["in_console", *super().get_readonly_fields(request, obj)]

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        context = {"subtitle": f"Read-only. {self.console_note}", **(extra_context or {})}
        return super().changelist_view(request, extra_context=context)


class EventInline(ViewOnlyInline):
    model = models.Event
    readonly_fields = ("created_at", "from_status", "to_status", "reason_code", "text", "actor")
    fields = readonly_fields


class AttemptInline(ViewOnlyInline):
    model = models.Attempt
    readonly_fields = (
        "started_at",
        "finished_at",
        "phase",
        "outcome",
        "smtp_code",
        "reply",
        "provider_id",
        "worker",
        "settings_version",
    )
    fields = readonly_fields


class RecipientInline(ViewOnlyInline):
    model = models.Recipient
    readonly_fields = ("kind", "address", "name", "outcome", "code", "reply", "updated_at")
    fields = readonly_fields


class AttachmentInline(ViewOnlyInline):
    model = models.Attachment
    readonly_fields = ("filename", "content_type")
    fields = readonly_fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        # The names are enough here; the bytes stay in the database.
        return super().get_queryset(request).defer("content")


@admin.register(models.Message)
class MessageAdmin(ViewOnlyAdmin):
    console_note = (
        "Messages are re-sent, cancelled and explained on the Outgoing messages page (/)."
    )
    list_display = [
        "created_at",
        "sent_at",
        "message_to",
        "to_user",
        "from_address",
        "status",
        "reason_code",
        "backend",
        "channel",
    ]
    list_filter = ["status", "channel", "backend"]
    search_fields = ["message_to", "to_user", "subject"]
    inlines = [RecipientInline, AttachmentInline, EventInline, AttemptInline]

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        # What a mail log or a bounce hands back: a whole Message-ID (with or
        # without its angle brackets) or a relay's or SMS provider's queue id,
        # found as the console's search finds them, besides the text fields.
        found, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        named = selectors.messages_named_by_id(search_term.strip())
        if named:
            found = found | queryset.filter(pk__in=named)
        return found, may_have_duplicates

    def console_url(self, obj: Model | None) -> str:
        if obj is None:
            return reverse("outbound:home")
        return reverse("outbound:message", args=[obj.pk])


@admin.register(models.Contact)
class ContactAdmin(ViewOnlyAdmin):
    console_url_name = "outbound:contacts"
    console_note = "Contacts are added and edited on the console's Contacts page (/contacts/)."
    list_display = ["name", "email", "mobile", "preferred_channel", "active", "external_id"]
    search_fields = ["name", "email", "mobile", "external_id"]

    def console_url(self, obj: Model | None) -> str:
        if obj is None:
            return reverse("outbound:contacts")
        return reverse("outbound:contact", args=[obj.pk])


@admin.register(models.Suppression)
class SuppressionAdmin(ViewOnlyAdmin):
    console_url_name = "outbound:blocklist"
    console_note = "Entries are added and removed on the console's Blocklist page (/blocklist/)."
    list_display = ["kind", "value", "reason", "created_at"]


@admin.register(models.WorkerHeartbeat)
class WorkerAdmin(ViewOnlyAdmin):
    console_url_name = "outbound:workers"
    console_note = (
        "Workers write these rows themselves; the console's Workers page (/workers/) shows them."
    )
    list_display = ["name", "last_seen", "stopped_at", "processed"]
