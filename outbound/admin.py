from django.contrib import admin
from django.http import HttpRequest

from outbound import models


class EventInline(admin.TabularInline):
    model = models.Event
    extra = 0
    can_delete = False
    readonly_fields = ("created_at", "from_status", "to_status", "reason_code", "text", "actor")
    fields = readonly_fields

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class AttemptInline(admin.TabularInline):
    model = models.Attempt
    extra = 0
    can_delete = False
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

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(models.Message)
class MessageAdmin(admin.ModelAdmin):
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
    search_fields = ["message_to", "to_user", "subject", "message_id"]
    inlines = [EventInline, AttemptInline]

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        # Statuses change through the services only.
        return False


@admin.register(models.Contact)
class ContactAdmin(admin.ModelAdmin):
    list_display = ["name", "email", "mobile", "preferred_channel", "active", "external_id"]
    search_fields = ["name", "email", "mobile", "external_id"]


@admin.register(models.Suppression)
class SuppressionAdmin(admin.ModelAdmin):
    list_display = ["kind", "value", "reason", "created_at"]


@admin.register(models.WorkerHeartbeat)
class WorkerAdmin(admin.ModelAdmin):
    list_display = ["name", "last_seen", "stopped_at", "processed"]
