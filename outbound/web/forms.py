"""Forms of the operator console: they parse what was typed. Validation of
addresses and numbers is the services' job, so the same rules hold for the
console, the API and the CLI; their field errors are put back on the form."""

from __future__ import annotations

from typing import Any

from django import forms

from outbound.errors import InvalidInput
from outbound.models import Backend, Security, Suppression
from outbound.selectors import MessageFilters
from outbound.states import Channel, Status


class MessageFilterForm(forms.Form):
    status = forms.ChoiceField(required=False, choices=[("", "Any status"), *Status.choices])
    channel = forms.ChoiceField(required=False, choices=[("", "Any channel"), *Channel.choices])
    backend = forms.TypedChoiceField(required=False, coerce=int, empty_value=None)
    date_from = forms.DateField(
        required=False, label="From", widget=forms.DateInput(attrs={"type": "date"})
    )
    date_to = forms.DateField(
        required=False, label="To", widget=forms.DateInput(attrs={"type": "date"})
    )
    q = forms.CharField(
        required=False,
        label="Search",
        max_length=200,
        widget=forms.TextInput(attrs={"placeholder": "Address, name or subject"}),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["backend"]
        assert isinstance(field, forms.TypedChoiceField)
        field.choices = [("", "Any backend")] + [
            (str(b.pk), b.name) for b in Backend.objects.order_by("name")
        ]

    def filters(self) -> MessageFilters:
        """The valid filters; a field typed wrong is left out (and shown as an error)."""
        self.is_valid()
        data = getattr(self, "cleaned_data", {})
        return MessageFilters(
            status=data.get("status") or "",
            channel=data.get("channel") or "",
            backend=data.get("backend"),
            date_from=data.get("date_from"),
            date_to=data.get("date_to"),
            q=data.get("q") or "",
        )


class ServiceErrorsMixin:
    """Put an ``InvalidInput``'s per-field messages on the form."""

    def add_service_errors(self, err: InvalidInput) -> None:
        form: Any = self
        for name, messages in err.errors.items():
            target = name if name in form.fields else None
            for message in messages:
                form.add_error(target, message)


class ContactForm(ServiceErrorsMixin, forms.Form):
    name = forms.CharField(required=False, max_length=200)
    email = forms.CharField(required=False, max_length=320, label="Email address")
    mobile = forms.CharField(
        required=False,
        max_length=40,
        label="Mobile number",
        help_text="International format is safest, e.g. +44 7700 900123.",
    )
    preferred_channel = forms.ChoiceField(choices=Channel.choices)
    notifications_enabled = forms.BooleanField(required=False, label="Notifications enabled")
    active = forms.BooleanField(required=False)
    external_id = forms.CharField(
        required=False,
        max_length=200,
        label="External id",
        help_text="The platform's key for this person; leave empty if unknown.",
    )

    def service_data(self) -> dict[str, Any]:
        return {key: self.cleaned_data[key] for key in self.fields}


class BlockForm(ServiceErrorsMixin, forms.Form):
    kind = forms.ChoiceField(choices=Suppression.Kind.choices, label="Kind")
    value = forms.CharField(
        max_length=320,
        label="Address, domain or number",
        widget=forms.TextInput(
            attrs={"placeholder": "ann@example.com, example.com, +447700900123"}
        ),
    )
    reason = forms.CharField(required=False, max_length=500)


class BackendForm(ServiceErrorsMixin, forms.Form):
    """An email backend's settings. The password is write-only: it is never
    put back into the page, and blank keeps the stored one."""

    name = forms.CharField(max_length=100)
    host = forms.CharField(required=False, max_length=255, label="Host")
    # No bounds here: the service's message is the one the API and CLI give too.
    port = forms.IntegerField(initial=587)
    security = forms.ChoiceField(choices=Security.choices, initial=Security.STARTTLS)
    username = forms.CharField(required=False, max_length=255, label="User name")
    password = forms.CharField(
        required=False,
        max_length=1000,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
    )
    clear_password = forms.BooleanField(required=False, label="Clear the stored password")
    from_address = forms.CharField(required=False, max_length=320, label="From address")
    timeout = forms.FloatField(initial=30, help_text="Seconds to wait for each server reply.")
    limit = forms.IntegerField(
        required=False, help_text="Messages this backend may send; leave empty for no limit."
    )
    rate_per_minute = forms.IntegerField(
        required=False,
        label="Rate per minute",
        help_text="Most messages all workers together send in a minute; empty for no limit.",
    )
    max_connections = forms.IntegerField(
        required=False,
        label="Connections at most",
        help_text="Most connections all workers together open at once; empty for no cap.",
    )
    is_default = forms.BooleanField(required=False, label="Default email backend")

    def __init__(self, *args: Any, backend: Backend | None = None, **kwargs: Any) -> None:
        self.backend = backend
        if backend is not None and "initial" not in kwargs:
            kwargs["initial"] = {
                key: getattr(backend, key)
                for key in self.base_fields
                if key not in ("password", "clear_password")
            }
        kwargs.setdefault("prefix", f"b{backend.pk}" if backend is not None else "new")
        super().__init__(*args, **kwargs)
        stored = backend is not None and backend.has_secret
        self.fields["password"].help_text = (
            "A password is set; leave blank to keep it."
            if stored
            else "No password is set; leave blank if the relay needs no login."
        )
        if not stored:
            del self.fields["clear_password"]

    def service_data(self) -> dict[str, Any]:
        data = dict(self.cleaned_data)
        if not data.get("password"):
            data.pop("password", None)
        return data

    def unsaved_changes(self) -> list[str]:
        """Labels of the fields whose typed value differs from the stored one."""
        if self.backend is None:
            return ["everything (this backend is not saved yet)"]
        changed = []
        for key, value in self.cleaned_data.items():
            if key == "password":
                if value:
                    changed.append("password")
            elif key == "clear_password":
                if value:
                    changed.append("clear password")
            elif value != getattr(self.backend, key):
                changed.append(str(self.fields[key].label or key).lower())
        return changed


class GlobalSettingsForm(ServiceErrorsMixin, forms.Form):
    backend_failure_email = forms.CharField(
        required=False,
        max_length=320,
        label="Backend Failure Email",
        help_text="Alerts about failing backends, stuck messages and silent workers go here.",
    )
    default_from = forms.CharField(
        required=False,
        max_length=320,
        label="Default from address",
        help_text="Used when neither the message nor its backend names a sender.",
    )
    stuck_threshold_minutes = forms.IntegerField(
        label="Stuck threshold (minutes)",
        help_text="A message waiting this long past its due time counts as stuck.",
    )
    retry_lifetime_hours = forms.IntegerField(
        label="Retry lifetime (hours)",
        help_text="After a temporary failure, retries stop this long after the first try.",
    )
    alert_reminder_interval_hours = forms.IntegerField(
        label="Alert reminder every (hours)",
        help_text="While a problem lasts, the alert is repeated this often.",
    )
    worker_silence_threshold_minutes = forms.IntegerField(
        label="Worker silent after (minutes)",
        help_text="No worker heartbeat for this long raises an alert.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("prefix", "global")
        super().__init__(*args, **kwargs)

    def service_data(self) -> dict[str, Any]:
        return dict(self.cleaned_data)
