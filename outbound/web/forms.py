"""Forms of the operator console: they parse what was typed. Validation of
addresses and numbers is the services' job, so the same rules hold for the
console, the API and the CLI; their field errors are put back on the form."""

from __future__ import annotations

from typing import Any

from django import forms

from outbound.errors import InvalidInput
from outbound.models import Backend, Suppression
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
