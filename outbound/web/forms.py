"""Forms of the operator console: they parse what was typed. Validation of
addresses and numbers is the services' job, so the same rules hold for the
console, the API and the CLI; their field errors are put back on the form."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.core.validators import ProhibitNullCharactersValidator

from outbound.errors import InvalidInput
from outbound.models import Backend, BackendKind, Security, Suppression
from outbound.selectors import MessageFilters
from outbound.services.sms_backends import HTTP_OPTIONS
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
        error_messages={
            "max_length": "A search is at most %(limit_value)d characters "
            "(this one has %(show_value)d); it was left out."
        },
        widget=forms.TextInput(
            attrs={"placeholder": "Address, name, subject, Message-ID or queue id"}
        ),
    )

    # Set by the "Held for it" link of a backend's settings card; kept hidden
    # so filtering further keeps it.
    held_for = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["backend"]
        assert isinstance(field, forms.TypedChoiceField)
        field.choices = [("", "Any backend")] + [
            (str(b.pk), b.name) for b in Backend.objects.order_by("name")
        ]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        start, end = data.get("date_from"), data.get("date_to")
        if start and end and start > end:
            # No message can be created after the From date and before the To
            # date: say so rather than show an empty list.
            self.add_error(
                "date_to",
                f"The To date ({end:%Y-%m-%d}) is before the From date ({start:%Y-%m-%d}); "
                "no message could match.",
            )
        return data

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
            held_for=data.get("held_for"),
        )


class SearchForm(forms.Form):
    """A page's search box. A Django CharField refuses NUL characters itself
    (they would reach PostgreSQL as a 500); the error is shown by the box."""

    q = forms.CharField(required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Django's "Null characters are not allowed." names nothing a person
        # typed; say it as the API does.
        for validator in self.fields["q"].validators:
            if isinstance(validator, ProhibitNullCharactersValidator):
                validator.message = (
                    "The search text contains a NUL character (\\x00), which no stored "
                    "text holds; type the search again."
                )

    def term(self) -> str | None:
        """The text to search for (at most 200 characters), or None when refused."""
        if not self.is_valid():
            return None
        return str(self.cleaned_data["q"])[:200]

    def error(self) -> str:
        return " ".join(str(e) for e in self.errors.get("q", []))


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
        help_text="International format is safest, e.g. +44 7911 123456.",
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
            attrs={"placeholder": "ann@example.com, example.com, +447911123456"}
        ),
    )
    reason = forms.CharField(required=False, max_length=500)


class BackendSettingsForm(ServiceErrorsMixin, forms.Form):
    """What the email and the SMS backend forms share: the stored settings as
    initial values, and one comparison of what was typed with them."""

    # Write-only fields (a secret and its Clear box): never put back into the
    # page; a blank secret keeps the stored one.
    SECRETS: tuple[str, ...] = ()
    backend: Backend | None

    def stored_values(self, backend: Backend) -> dict[str, Any]:
        """The backend's stored settings as this form's values, secrets left out."""
        return {key: getattr(backend, key) for key in self.base_fields if key not in self.SECRETS}

    def unused_fields(self) -> frozenset[str]:
        """Fields whose typed value saving leaves out; by default none."""
        return frozenset()

    def unsaved_changes(self) -> list[str]:
        """Labels of the fields whose typed value differs from the stored one.

        Compared as each field reads its value (30 and 30.0 seconds are the
        same timeout, blank and None the same limit). A secret has no stored
        value to show, so a typed one (or a ticked Clear box) is a change and
        a blank one is not. Hidden fields are not typed, so not compared, and
        neither are the fields saving leaves out: what is typed there would
        not be saved either.
        """
        if self.backend is None:
            return ["everything (this backend is not saved yet)"]
        stored = self.stored_values(self.backend)
        unused = self.unused_fields()
        return [
            str(bound.label).lower()
            for bound in self.visible_fields()
            if bound.name not in unused
            and bound.field.has_changed(stored.get(bound.name), bound.data)
        ]


class BackendForm(BackendSettingsForm):
    """An email backend's settings. The password is write-only: it is never
    put back into the page, and blank keeps the stored one."""

    name = forms.CharField(max_length=100)
    host = forms.CharField(
        required=False,
        max_length=255,
        label="Host",
        help_text="The server's name or IP address only, e.g. smtp.example.com.",
    )
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
    is_default = forms.BooleanField(
        required=False,
        label="Default email backend",
        help_text="Email without a backend of its own goes through it. To move the role, "
        "tick this on the other backend.",
    )

    SECRETS = ("password", "clear_password")

    def __init__(self, *args: Any, backend: Backend | None = None, **kwargs: Any) -> None:
        self.backend = backend
        if backend is not None and "initial" not in kwargs:
            kwargs["initial"] = self.stored_values(backend)
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


SMS_KIND_CHOICES = [
    (BackendKind.TWILIO.value, BackendKind.TWILIO.label),
    (BackendKind.HTTP.value, BackendKind.HTTP.label),
    (BackendKind.CONSOLE.value, "Console (prints the SMS in the worker's log; for trials)"),
    (BackendKind.LOCMEM.value, "In memory (keeps the SMS in the worker; for tests)"),
]


class SmsBackendForm(BackendSettingsForm):
    """An SMS backend's settings. The secrets (auth token or API secret, and the
    receipt secret) are write-only: never put back into the page."""

    channel = forms.CharField(widget=forms.HiddenInput, initial="sms")
    name = forms.CharField(max_length=100)
    kind = forms.ChoiceField(choices=SMS_KIND_CHOICES, label="Provider")
    from_address = forms.CharField(
        required=False,
        max_length=320,
        label="Sender",
        help_text="The number SMS come from (E.164, e.g. +14155550100), an alphanumeric "
        "sender id, or for Twilio a messaging service SID (MG…).",
    )
    username = forms.CharField(
        required=False, max_length=255, label="Account SID", help_text="Twilio only: AC…"
    )
    password = forms.CharField(
        required=False,
        max_length=1000,
        strip=False,
        label="Auth token or API secret",
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
    )
    clear_password = forms.BooleanField(required=False, label="Clear the stored secret")
    base_url = forms.CharField(
        required=False,
        max_length=255,
        label="Twilio API address",
        help_text="Leave empty for https://api.twilio.com.",
    )
    url = forms.CharField(
        required=False, max_length=255, label="Gateway URL", help_text="HTTP gateway only."
    )
    method = forms.ChoiceField(
        choices=[("POST", "POST"), ("PUT", "PUT")], initial="POST", label="Method"
    )
    headers = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        label="Headers (JSON)",
        help_text='e.g. {"Authorization": "Bearer {secret}"}; {secret} is replaced by the '
        "stored secret, so the secret itself never sits here.",
    )
    body_template = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        label="Body template (JSON)",
        help_text="Placeholders: {to} {from} {body} {message_id} {status_callback} {secret}.",
    )
    id_path = forms.CharField(required=False, max_length=200, label="Message id in the answer")
    error_path = forms.CharField(required=False, max_length=200, label="Error in the answer")
    error_code_path = forms.CharField(
        required=False, max_length=200, label="Error code in the answer"
    )
    idempotency_header = forms.CharField(required=False, max_length=100, label="Idempotency header")
    invalid_number_codes = forms.CharField(
        required=False,
        max_length=500,
        label="Error codes meaning a bad number",
        help_text="Comma-separated; such a refusal makes the message Not sent.",
    )
    probe_url = forms.CharField(
        required=False, max_length=255, label="Test URL", help_text="Asked by the Test."
    )
    probe_method = forms.ChoiceField(
        choices=[("GET", "GET"), ("HEAD", "HEAD"), ("POST", "POST")],
        initial="GET",
        label="Test method",
    )
    receipt_secret = forms.CharField(
        required=False,
        max_length=1000,
        strip=False,
        label="Receipt secret",
        help_text="HTTP gateway only: receipts must carry “Authorization: Bearer <this>”.",
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
    )
    clear_receipt_secret = forms.BooleanField(required=False, label="Clear the receipt secret")
    timeout = forms.FloatField(initial=30, help_text="Seconds to wait for the provider.")
    limit = forms.IntegerField(
        required=False, help_text="Messages (credits) this backend may send; empty for no limit."
    )
    rate_per_minute = forms.IntegerField(required=False, label="Rate per minute")
    max_connections = forms.IntegerField(
        required=False,
        label="Connections at most",
        help_text="Most requests all workers together make to the provider at once; empty for "
        "no cap.",
    )
    is_default = forms.BooleanField(
        required=False,
        label="Default SMS backend",
        help_text="SMS without a backend of its own go through it. To move the role, "
        "tick this on the other backend.",
    )

    OPTION_FIELDS = (
        "base_url",
        "url",
        "method",
        "headers",
        "body_template",
        "id_path",
        "error_path",
        "error_code_path",
        "idempotency_header",
        "invalid_number_codes",
        "probe_url",
        "probe_method",
    )
    TWILIO_FIELDS = ("username", "base_url")
    HTTP_FIELDS = (*OPTION_FIELDS[1:], "receipt_secret", "clear_receipt_secret")
    SECRETS = ("password", "clear_password", "receipt_secret", "clear_receipt_secret")

    def __init__(self, *args: Any, backend: Backend | None = None, **kwargs: Any) -> None:
        self.backend = backend
        if backend is not None and "initial" not in kwargs:
            kwargs["initial"] = self.stored_values(backend)
        if backend is None:
            # A new gateway starts from the standard settings, so a blank
            # field means the administrator cleared it on purpose.
            defaults = {
                key: value
                for key, value in HTTP_OPTIONS.items()
                if key not in ("headers", "invalid_number_codes", "url", "probe_url")
            }
            kwargs["initial"] = {**defaults, **kwargs.get("initial", {})}
        kwargs.setdefault("prefix", f"b{backend.pk}" if backend is not None else "newsms")
        super().__init__(*args, **kwargs)
        self.fields["password"].help_text = (
            "A secret is set; leave blank to keep it."
            if backend is not None and backend.has_secret
            else "Twilio: the auth token. HTTP gateway: the API key, used as {secret}."
        )
        if backend is None or not backend.has_secret:
            del self.fields["clear_password"]
        if backend is None or not backend.receipt_secret:
            del self.fields["clear_receipt_secret"]

    def stored_values(self, backend: Backend) -> dict[str, Any]:
        """The columns as they are, the provider options as they are typed.

        An option the backend does not store (a Twilio backend has no method)
        is the field's default: the list shows it selected and the browser
        sends it back, which is no change.
        """
        values = {
            key: getattr(backend, key)
            for key in self.base_fields
            if key not in self.SECRETS and key not in self.OPTION_FIELDS
        }
        options = dict(backend.options or {})
        for key in self.OPTION_FIELDS:
            value = options.get(key, self.base_fields[key].initial or "")
            if key == "headers":
                value = json.dumps(value) if value else ""
            elif key == "invalid_number_codes":
                value = ", ".join(value or [])
            values[key] = value
        return values

    def unused_fields(self) -> frozenset[str]:
        """The fields of the providers not selected: only the chosen provider's
        own settings go to the service (a Twilio backend has no gateway URL)."""
        cleaned = getattr(self, "cleaned_data", None)
        kind = cleaned.get("kind") if cleaned is not None else self["kind"].value()
        keep = set(self.TWILIO_FIELDS if kind == BackendKind.TWILIO else ())
        keep |= set(self.HTTP_FIELDS if kind == BackendKind.HTTP else ())
        return frozenset(self.TWILIO_FIELDS + self.HTTP_FIELDS) - keep

    def service_data(self) -> dict[str, Any]:
        data = dict(self.cleaned_data)
        for key in ("password", "receipt_secret"):
            if not data.get(key):
                data.pop(key, None)
        for key in self.unused_fields():
            data.pop(key, None)
        if self.backend is not None:
            data.pop("channel", None)
        return data


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
    sms_enabled = forms.BooleanField(
        required=False,
        label="SMS enabled",
        help_text="Off: SMS messages are Not sent with that reason, and notifications go by email.",
    )
    default_region = forms.CharField(
        max_length=2,
        label="Default phone region",
        help_text="Numbers without a country code are read in this region (US, GB, FR, …).",
    )
    max_sms_segments = forms.IntegerField(
        label="Maximum SMS segments",
        help_text="A longer text is Not sent (160 GSM-7 or 70 UCS-2 characters per segment).",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("prefix", "global")
        super().__init__(*args, **kwargs)

    def service_data(self) -> dict[str, Any]:
        return dict(self.cleaned_data)
