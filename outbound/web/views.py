"""Operator console pages. Each view parses input, calls one service (or a
selector), and renders; permissions are checked on every POST, not only by
hiding the buttons."""

from __future__ import annotations

from typing import Any

from django.contrib import messages as flash
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from outbound import selectors
from outbound.conf import forbid_private_hosts
from outbound.errors import InvalidInput
from outbound.explain import diagnostic_report, explain_message
from outbound.models import Backend, Contact, GlobalSettings, Message, Suppression
from outbound.permissions import (
    ADD_BLOCK,
    ADD_CONTACT,
    ADMINISTER,
    CHANGE_BACKEND,
    DELETE_BLOCK,
    EDIT_CONTACT,
    OPERATE,
)
from outbound.services import blocklist, contacts, operations
from outbound.services.backends import (
    reset_sent_count,
    save_backend_settings,
    send_test_message,
    send_test_sms,
    test_backend,
)
from outbound.services.global_settings import global_settings_data, save_global_settings
from outbound.services.sms_backends import status_callback_url
from outbound.sms import analyse
from outbound.states import RESENDABLE, Channel, Reason, Status
from outbound.web import audit_words
from outbound.web.access import require_role as _require
from outbound.web.forms import (
    BackendForm,
    BlockForm,
    ContactForm,
    GlobalSettingsForm,
    MessageFilterForm,
    SearchForm,
    SmsBackendForm,
)
from outbound.web.test_advice import advice_for


def _actor(request: HttpRequest) -> str:
    return request.user.get_username()


def _back(request: HttpRequest, default: str) -> HttpResponseRedirect:
    """Return to the page the form came from (keeping its filters) if it is ours."""
    target = request.POST.get("next") or ""
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return HttpResponseRedirect(target)
    return HttpResponseRedirect(default)


def _report(request: HttpRequest, ok: bool, text: str, *, card: str = "") -> None:
    """A result for the next page; with ``card``, shown in that card of the
    settings page (where the button was pressed), not at the top."""
    tags = f"card-{card}" if card else ""
    (flash.success if ok else flash.warning)(request, text, extra_tags=tags)


def _card(backend: Backend) -> str:
    return f"backend-{backend.pk}"


# The statuses a Cancel button is offered in (the service decides in the end).
CANCELLABLE = (Status.WAITING, Status.TO_SEND, Status.BACKEND_TEST_REQUIRED)


def _reason_label(code: str) -> str:
    return Reason(code).label if code in Reason.values else code


# ------------------------------------------------------------ outgoing list


@_require()
@require_GET
def message_list(request: HttpRequest) -> HttpResponse:
    form = MessageFilterForm(request.GET or None)
    filters = form.filters() if request.GET else selectors.MessageFilters()
    before = selectors.Cursor.decode(request.GET.get("before", ""))
    after = selectors.Cursor.decode(request.GET.get("after", ""))
    page = selectors.message_page(filters, before=before, after=after)
    for m in page.rows:
        m.reason_label = _reason_label(m.reason_code)  # type: ignore[attr-defined]
    overview = selectors.overview()
    # The counts follow the other filters (a backend, a channel, dates, a
    # search): each button then says how many of those messages it shows.
    counts = selectors.status_counts(filters) if filters.active else overview.counts
    base_query = request.GET.copy()
    for key in ("before", "after"):
        base_query.pop(key, None)
    status_links = []
    for status in Status:
        query = base_query.copy()
        query["status"] = status.value
        status_links.append(
            {
                "status": status.value,
                "label": status.label,
                "count": counts.get(status.value, 0),
                "query": query.urlencode(),
                "active": filters.status == status.value,
            }
        )
    any_status = base_query.copy()
    any_status.pop("status", None)

    def page_link(key: str, cursor: selectors.Cursor | None) -> str:
        if cursor is None:
            return ""
        query = base_query.copy()
        query[key] = cursor.encode()
        return "?" + query.urlencode()

    held_for = (
        Backend.objects.filter(pk=filters.held_for).first()
        if filters.held_for is not None
        else None
    )
    no_held = base_query.copy()
    no_held.pop("held_for", None)
    return render(
        request,
        "outbound/messages.html",
        {
            "form": form,
            "held_for": held_for,
            "without_held_query": no_held.urlencode(),
            "filters": filters,
            "page": page,
            "overview": overview,
            "status_links": status_links,
            "all_query": any_status.urlencode(),
            "all_count": sum(counts.values()),
            "older_url": page_link("before", page.older),
            "newer_url": page_link("after", page.newer),
            "here": request.get_full_path(),
            "resendable": {s.value for s in RESENDABLE} | {Status.WAITING, Status.TO_SEND},
        },
    )


@require_POST
@_require(OPERATE)
def send_outgoing(request: HttpRequest) -> HttpResponse:
    result = operations.send_outgoing(actor=_actor(request))
    # Queued but with no worker to send them: a warning, not a success.
    _report(request, result.ok and not result.warn, result.text)
    return _back(request, reverse("outbound:home"))


# ------------------------------------------------------------- one message


@_require()
@require_GET
def message_detail(request: HttpRequest, pk: int) -> HttpResponse:
    message = get_object_or_404(Message.objects.select_related("backend", "contact"), pk=pk)
    explanation = explain_message(message)
    return render(
        request,
        "outbound/message.html",
        {
            "message": message,
            "load_remote": request.GET.get("remote") == "1",
            "explanation": explanation,
            "reason_label": _reason_label(message.reason_code),
            "timeline": selectors.message_timeline(message),
            "recipients": list(message.recipients.order_by("id")),
            "parts": selectors.message_parts(message),
            "sms_info": analyse(message.text_body) if message.channel == Channel.SMS else None,
            "can_resend": message.status != Status.CANCELLED
            and message.status != Status.BACKEND_TEST_REQUIRED,
            "can_cancel": message.status in CANCELLABLE,
        },
    )


@_require()
@require_GET
def message_report(request: HttpRequest, pk: int) -> HttpResponse:
    message = get_object_or_404(Message, pk=pk)
    if request.GET.get("format") == "text":
        return HttpResponse(diagnostic_report(message), content_type="text/plain; charset=utf-8")
    return render(
        request,
        "outbound/report.html",
        {"message": message, "report": diagnostic_report(message)},
    )


@require_POST
@_require(OPERATE)
def message_resend(request: HttpRequest, pk: int) -> HttpResponse:
    message = get_object_or_404(Message.objects.select_related("contact"), pk=pk)
    if message.status == Status.SENT and request.POST.get("confirm") != "yes":
        # A second copy reaches the customer: ask first, in a form step that
        # needs no script.
        return _confirm_page(request, message, action="resend")
    result = operations.resend_message(message, actor=_actor(request))
    _report(request, result.ok, f"Message {pk}: {result.text}")
    return _back(request, reverse("outbound:message", args=[pk]))


def _confirm_page(request: HttpRequest, message: Message, *, action: str) -> HttpResponse:
    """The question asked before an action that cannot be taken back."""
    target = request.POST.get("next") or ""
    if not (
        target
        and url_has_allowed_host_and_scheme(
            target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        )
    ):
        target = reverse("outbound:message", args=[message.pk])
    return render(
        request,
        "outbound/confirm.html",
        {"message": message, "action": action, "next": target},
    )


@require_POST
@_require(OPERATE)
def message_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    message = get_object_or_404(Message, pk=pk)
    if message.status in CANCELLABLE and request.POST.get("confirm") != "yes":
        return _confirm_page(request, message, action="cancel")
    result = operations.cancel_message(message, actor=_actor(request))
    _report(request, result.ok, f"Message {pk}: {result.text}")
    return _back(request, reverse("outbound:message", args=[pk]))


# ---------------------------------------------------------------- contacts


@_require()
@require_GET
def contact_list(request: HttpRequest) -> HttpResponse:
    search = SearchForm(request.GET)
    q = search.term()
    return render(
        request,
        "outbound/contacts.html",
        {
            "contacts": selectors.search_contacts(q) if q is not None else [],
            "q": q or "",
            "search_error": search.error(),
        },
    )


def _initial(contact: Contact) -> dict[str, Any]:
    return {
        "name": contact.name,
        "email": contact.email,
        "mobile": contact.mobile,
        "preferred_channel": contact.preferred_channel,
        "notifications_enabled": contact.notifications_enabled,
        "active": contact.active,
        "external_id": contact.external_id or "",
    }


@_require()
@require_http_methods(["GET", "POST"])
def contact_edit(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    contact = get_object_or_404(Contact, pk=pk) if pk is not None else None
    # The message being fixed, when the operator came from a Not sent message.
    origin: Message | None = None
    raw_origin = request.GET.get("message") or request.POST.get("message") or ""
    if raw_origin.isdigit():
        origin = Message.objects.filter(pk=int(raw_origin), contact=contact).first()
    if request.method == "POST":
        if not request.user.has_perm(EDIT_CONTACT if contact else ADD_CONTACT):
            raise PermissionDenied("You may not edit contacts.")
        wants_resend = "save_resend" in request.POST and origin is not None
        if wants_resend and not request.user.has_perm(OPERATE):
            raise PermissionDenied("You may not re-send messages.")
        form = ContactForm(request.POST)
        if form.is_valid():
            try:
                saved = contacts.save_contact(
                    contact=contact, data=form.service_data(), actor=_actor(request)
                )
            except InvalidInput as err:
                form.add_service_errors(err)
            else:
                flash.success(request, f"Contact {saved} saved.")
                if wants_resend and origin is not None:
                    # Two clicks from a Not sent message: the re-send picks up
                    # the address just saved, because validation reads the
                    # contact again.
                    result = operations.resend_message(origin, actor=_actor(request))
                    _report(request, result.ok, f"Message {origin.pk}: {result.text}")
                    return redirect("outbound:message", pk=origin.pk)
                return redirect("outbound:contact", pk=saved.pk)
    else:
        form = ContactForm(
            initial=_initial(contact)
            if contact
            else {"active": True, "notifications_enabled": True}
        )
    return render(
        request,
        "outbound/contact_form.html",
        {"form": form, "contact": contact, "origin": origin},
    )


# ---------------------------------------------------------------- blocklist


@_require()
@require_http_methods(["GET", "POST"])
def blocklist_view(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        if not request.user.has_perm(ADD_BLOCK):
            raise PermissionDenied("You may not change the blocklist.")
        form = BlockForm(request.POST)
        if form.is_valid():
            try:
                entry = blocklist.add_block(
                    kind=form.cleaned_data["kind"],
                    value=form.cleaned_data["value"],
                    reason=form.cleaned_data["reason"],
                    actor=_actor(request),
                )
            except InvalidInput as err:
                form.add_service_errors(err)
            else:
                flash.success(request, f"{entry} added to the blocklist.")
                return redirect("outbound:blocklist")
    else:
        form = BlockForm()
    search = SearchForm(request.GET)
    q = search.term()
    entries = Suppression.objects.all() if q is not None else Suppression.objects.none()
    if q:
        entries = entries.filter(value__icontains=q.strip())
    return render(
        request,
        "outbound/blocklist.html",
        {
            "form": form,
            "entries": list(entries.order_by("kind", "value")[:500]),
            "q": q or "",
            "search_error": search.error(),
        },
    )


@require_POST
@_require(DELETE_BLOCK)
def blocklist_remove(request: HttpRequest, pk: int) -> HttpResponse:
    entry = get_object_or_404(Suppression, pk=pk)
    text = str(entry)
    blocklist.remove_block(entry, actor=_actor(request))
    flash.success(request, f"{text} removed from the blocklist.")
    return redirect("outbound:blocklist")


# ------------------------------------------------------- workers, audit, settings


@_require()
@require_GET
def workers(request: HttpRequest) -> HttpResponse:
    overview = selectors.overview()
    return render(request, "outbound/workers.html", {"overview": overview})


@_require()
@require_GET
def audit(request: HttpRequest) -> HttpResponse:
    raw = request.GET.get("before", "")
    before = int(raw) if raw.isdigit() else None
    rows, older = selectors.audit_page(before=before)
    lines = audit_words.describe(rows, selectors.audit_object_names(rows))
    return render(
        request,
        "outbound/audit.html",
        {"entries": lines, "older": older, "first_page": before is None},
    )


def _last_test(backend: Backend) -> dict[str, Any] | None:
    """The stored result of the backend's last test, with its advice."""
    result = backend.last_test_result or {}
    if not backend.last_test_at or not result:
        return None
    return {
        "at": backend.last_test_at,
        "advice": advice_for(str(result.get("reason", "")), kind=backend.kind),
        "code": result.get("code"),
        "reply": result.get("reply") or "",
        "phase": result.get("phase") or "",
        "elapsed": result.get("elapsed"),
        "actor": result.get("actor") or "",
        # A test of an older settings version says nothing about the current one.
        "stale": result.get("settings_version") not in (None, backend.settings_version),
        "transcript": result.get("transcript") or [],
    }


def _settings_page(
    request: HttpRequest,
    *,
    bound: BackendForm | SmsBackendForm | None = None,
    global_form: GlobalSettingsForm | None = None,
    status: int = 200,
) -> HttpResponse:
    """Render the settings page; a form that failed is shown bound, the others fresh."""
    can_edit_backends = request.user.has_perm(CHANGE_BACKEND)
    can_administer = request.user.has_perm(ADMINISTER)
    settings = GlobalSettings.load()
    # Results of Save, Test and the test message go in the card where the
    # button was; anything else stays at the top of the page.
    notes: dict[str, list[Any]] = {}
    page_notes = []
    for note in flash.get_messages(request):
        card = next((t[5:] for t in note.extra_tags.split() if t.startswith("card-")), "")
        if card:
            notes.setdefault(card, []).append(note)
        else:
            page_notes.append(note)
    rows = selectors.backend_rows()
    for row in rows:
        backend = row.backend
        row.notes = notes.get(_card(backend), [])  # type: ignore[attr-defined]
        row.test = _last_test(backend)  # type: ignore[attr-defined]
        form: BackendForm | SmsBackendForm | None = None
        if can_edit_backends:
            if bound is not None and bound.backend is not None and bound.backend.pk == backend.pk:
                form = bound
            elif backend.channel == Channel.SMS:
                form = SmsBackendForm(backend=backend)
            else:
                form = BackendForm(backend=backend)
        row.form = form  # type: ignore[attr-defined]
        row.receipt_url = status_callback_url(backend)  # type: ignore[attr-defined]
    new_form: BackendForm | SmsBackendForm | None = None
    new_sms_form: BackendForm | SmsBackendForm | None = None
    new_bound = bound if bound is not None and bound.backend is None else None
    if can_edit_backends:
        has_email = any(r.backend.channel == Channel.EMAIL for r in rows)
        has_sms = any(r.backend.channel == Channel.SMS for r in rows)
        new_form = (
            new_bound
            if isinstance(new_bound, BackendForm)
            else BackendForm(initial={"is_default": not has_email})
        )
        new_sms_form = (
            new_bound
            if isinstance(new_bound, SmsBackendForm)
            else SmsBackendForm(initial={"is_default": not has_sms, "channel": "sms"})
        )
    error_summary = _error_summary(bound, global_form)
    if can_administer and global_form is None:
        global_form = GlobalSettingsForm(initial=global_settings_data(settings))
    return render(
        request,
        "outbound/settings.html",
        {
            "settings": settings,
            "backends": rows,
            "private_hosts_allowed": not forbid_private_hosts(),
            "alerts": selectors.recent_alerts(),
            "new_form": new_form,
            "new_open": isinstance(new_bound, BackendForm),
            "new_sms_form": new_sms_form,
            "new_sms_open": isinstance(new_bound, SmsBackendForm),
            "global_form": global_form if can_administer else None,
            "can_administer": can_administer,
            "can_edit_backends": can_edit_backends,
            "messages": page_notes,
            "global_notes": notes.get("global", []),
            "error_summary": error_summary,
        },
        status=status,
    )


def _error_summary(
    bound: BackendForm | SmsBackendForm | None, global_form: GlobalSettingsForm | None
) -> dict[str, Any] | None:
    """What a failed save says at the top of the page: which form, which
    fields and why, and that a typed secret must be typed again (a password
    field is never filled back in)."""
    form: BackendForm | SmsBackendForm | GlobalSettingsForm | None = None
    if bound is not None and bound.errors:
        form = bound
    elif global_form is not None and global_form.errors:
        form = global_form
    if form is None:
        return None
    fields = [
        (
            form.fields[name].label or name if name in form.fields else "Settings",
            " ".join(str(e) for e in errors),
        )
        for name, errors in form.errors.items()
    ]
    if isinstance(form, GlobalSettingsForm):
        return {
            "title": "The global settings",
            "what": "were",
            "anchor": "global-title",
            "fields": fields,
            "secret": "",
        }
    backend = form.backend
    if backend is not None:
        title, anchor = f"Backend {backend.name}", f"backend-{backend.pk}"
    elif isinstance(form, SmsBackendForm):
        title, anchor = "The new SMS backend", "new-sms-backend-title"
    else:
        title, anchor = "The new backend", "new-backend-title"
    secret = str(form["password"].label) if "password" in form.fields else ""
    return {"title": title, "what": "was", "anchor": anchor, "fields": fields, "secret": secret}


def _backend_anchor(backend: Backend) -> str:
    return f"{reverse('outbound:settings')}#backend-{backend.pk}"


@_require()
@require_GET
def settings_view(request: HttpRequest) -> HttpResponse:
    return _settings_page(request)


@require_POST
@_require(CHANGE_BACKEND)
def backend_save(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    backend = get_object_or_404(Backend, pk=pk) if pk is not None else None
    channel = backend.channel if backend is not None else request.POST.get("newsms-channel")
    form: BackendForm | SmsBackendForm
    if channel == Channel.SMS:
        form = SmsBackendForm(request.POST, backend=backend)
    else:
        form = BackendForm(request.POST, backend=backend)
    if not form.is_valid():
        return _settings_page(request, bound=form)
    try:
        saved = save_backend_settings(
            backend=backend, data=form.service_data(), actor=_actor(request)
        )
    except InvalidInput as err:
        form.add_service_errors(err)
        return _settings_page(request, bound=form)
    if request.POST.get("action") == "save_test":
        # The one case where a view calls two services: the administrator
        # asked for both in one click, and the test must see the saved values.
        result = test_backend(saved, actor=_actor(request))
        advice = advice_for(result.reason, kind=saved.kind)
        _report(
            request,
            result.ok,
            f"Backend {saved.name} saved and tested: {advice.headline}.",
            card=_card(saved),
        )
    else:
        untested = saved.tested_version != saved.settings_version
        flash.success(
            request,
            f"Backend {saved.name} saved."
            + (" Run the test: its messages are held until a test succeeds." if untested else ""),
            extra_tags=f"card-{_card(saved)}",
        )
    return HttpResponseRedirect(_backend_anchor(saved))


@require_POST
@_require(CHANGE_BACKEND)
def backend_reset_count(request: HttpRequest, pk: int) -> HttpResponse:
    backend = get_object_or_404(Backend, pk=pk)
    reset_sent_count(backend, actor=_actor(request))
    flash.success(
        request,
        f"Sent count of backend {backend.name} reset; messages waiting for allowance go out.",
        extra_tags=f"card-{_card(backend)}",
    )
    return HttpResponseRedirect(_backend_anchor(backend))


@require_POST
@_require(CHANGE_BACKEND)
def backend_test_message(request: HttpRequest, pk: int) -> HttpResponse:
    backend = get_object_or_404(Backend, pk=pk)
    send = send_test_sms if backend.channel == Channel.SMS else send_test_message
    try:
        result = send(backend, to=request.POST.get("to", "")[:320], actor=_actor(request))
    except InvalidInput as err:
        flash.error(
            request,
            f"Test message: {' '.join(err.errors.get('to', [str(err)]))}",
            extra_tags=f"card-{_card(backend)}",
        )
    else:
        _report(request, result.ok, result.text, card=_card(backend))
    return HttpResponseRedirect(_backend_anchor(backend))


@require_POST
@_require(CHANGE_BACKEND)
def backend_test(request: HttpRequest, pk: int) -> HttpResponse:
    backend = get_object_or_404(Backend, pk=pk)
    # The Test button sits in the settings form, so what was typed comes
    # along; testing stored settings while other values show would mislead.
    if any(key.startswith(f"b{pk}-") for key in request.POST):
        form: BackendForm | SmsBackendForm
        if backend.channel == Channel.SMS:
            form = SmsBackendForm(request.POST, backend=backend)
        else:
            form = BackendForm(request.POST, backend=backend)
        changed = form.unsaved_changes() if form.is_valid() else ["some fields"]
        if changed:
            if form.is_valid():
                form.add_error(
                    None,
                    f"Unsaved changes ({', '.join(changed)}): the test checks the saved "
                    "settings. Save first, or use Save and test.",
                )
            return _settings_page(request, bound=form)
    result = test_backend(backend, actor=_actor(request))
    headline = advice_for(result.reason, kind=backend.kind).headline
    _report(request, result.ok, f"Test of backend {backend.name}: {headline}.", card=_card(backend))
    return HttpResponseRedirect(_backend_anchor(backend))


@require_POST
@_require(ADMINISTER)
def global_settings_save(request: HttpRequest) -> HttpResponse:
    form = GlobalSettingsForm(request.POST)
    if not form.is_valid():
        return _settings_page(request, global_form=form)
    try:
        saved = save_global_settings(data=form.service_data(), actor=_actor(request))
    except InvalidInput as err:
        form.add_service_errors(err)
        return _settings_page(request, global_form=form)
    if saved.backend_failure_email.strip():
        flash.success(request, "Global settings saved.", extra_tags="card-global")
    else:
        flash.warning(
            request,
            "Global settings saved. No Backend Failure Email is set: alerts about failing "
            "backends, stuck messages and silent workers are shown here but mailed to nobody.",
            extra_tags="card-global",
        )
    return HttpResponseRedirect(f"{reverse('outbound:settings')}#global-title")
