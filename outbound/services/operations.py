"""Operator actions on messages: re-send, cancel, cancel a group, send
outgoing messages now. Every interface (console, API, CLI) calls these.

Contract: each function changes statuses only through ``transitions``, writes
one audit entry, and returns an ``ActionResult`` whose ``text`` says what was
done (or why nothing was done) in words an administrator can read. A message
a worker is sending right now is never touched.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.utils import timezone

from outbound.errors import InvalidInput
from outbound.formats import plural
from outbound.models import Message
from outbound.selectors import HeldStuck, held_stuck, live_workers, stuck_messages
from outbound.services import transitions
from outbound.services.audit import record_audit
from outbound.services.intake import make_message_id
from outbound.states import RESENDABLE, Reason, Status
from outbound.text import sentence, text_problem


@dataclass
class ActionResult:
    ok: bool
    text: str
    changed: list[int] = field(default_factory=list)
    # Done, but with something the operator must act on (shown as a warning).
    warn: bool = False


def _get(message: Message | int) -> Message:
    if isinstance(message, Message):
        message.refresh_from_db()
        return message
    return Message.objects.get(pk=message)


def resend_message(message: Message | int, *, actor: str) -> ActionResult:
    """Send again with the contact's current data (Sent or Not sent -> Waiting).

    A message that is waiting or queued is made due now instead; one being
    sent right now is left alone.
    """
    m = _get(message)
    now = timezone.now()
    result: ActionResult
    if m.status in RESENDABLE:
        fields: dict[str, object] = {
            "next_attempt_at": now,
            "send_at": now,
            "possibly_delivered": False,
            "receipt_status": "",
            "receipt_code": "",
            "receipt_at": None,
            # A re-send is a new sending: its own Date header and its own
            # retry lifetime, counted from its first attempt.
            "first_attempt_at": None,
        }
        note = ""
        if m.status == Status.SENT:
            # A copy the server accepted already: a new Message-ID keeps the
            # recipient's mail system from dropping the re-send as a duplicate.
            fields["message_id"] = make_message_id(m.from_address)
            note = f" New Message-ID {fields['message_id']} (was {m.message_id})."
        moved = transitions.transition(
            m,
            to=Status.WAITING,
            reason=Reason.RESENT,
            text=f"Re-sent by {actor}; the recipient is looked up again from the contact.{note}",
            expect=[Status(m.status)],
            fields=fields,
            actor=actor,
        )
        result = (
            ActionResult(True, "The message will be sent again.", [m.pk])
            if moved
            else ActionResult(False, "The message changed meanwhile; nothing was done.")
        )
    elif m.status in (Status.WAITING, Status.TO_SEND):
        if m.claim_token is not None:
            result = ActionResult(False, "The message is being sent right now; nothing was done.")
        else:
            changed = _make_due([m.pk], actor=actor)
            result = ActionResult(
                bool(changed),
                "The message was already queued; it is now due at once."
                if changed
                else "The message changed meanwhile; nothing was done.",
                changed,
            )
    elif m.status == Status.BACKEND_TEST_REQUIRED:
        result = ActionResult(
            False,
            "The message is held until the backend test succeeds; fix and test the backend "
            "settings and it goes out by itself.",
        )
    else:
        result = ActionResult(False, "A cancelled message cannot be re-sent.")
    record_audit(
        actor=actor,
        action="resend",
        object_type="message",
        object_ids=[m.pk],
        ok=result.ok,
        result=result.text,
    )
    return result


def cancel_message(message: Message | int, *, actor: str) -> ActionResult:
    m = _get(message)
    if m.claim_token is not None and m.status == Status.TO_SEND:
        result = ActionResult(False, "The message is being sent right now; it cannot be cancelled.")
    elif m.status not in (Status.WAITING, Status.TO_SEND, Status.BACKEND_TEST_REQUIRED):
        result = ActionResult(False, f"A message in status {m.status_label} cannot be cancelled.")
    else:
        moved = transitions.transition(
            m,
            to=Status.CANCELLED,
            reason=Reason.CANCELLED,
            text=f"Cancelled by {actor}.",
            expect=[Status(m.status)],
            claim_token=None,
            fields={"next_attempt_at": None},
            actor=actor,
        )
        result = (
            ActionResult(True, "The message was cancelled.", [m.pk])
            if moved
            else ActionResult(False, "The message changed meanwhile; nothing was done.")
        )
    record_audit(
        actor=actor,
        action="cancel",
        object_type="message",
        object_ids=[m.pk],
        ok=result.ok,
        result=result.text,
    )
    return result


def cancel_group(group_key: str, *, actor: str) -> ActionResult:
    """Cancel every message of a series (reminders) that has not left yet."""
    if not group_key:
        return ActionResult(False, "A group key is required.")
    problem = text_problem(group_key)
    if problem:
        raise InvalidInput({"group_key": [sentence("The group key", problem)]})
    changed = transitions.transition_where(
        filters={"group_key": group_key, "claim_token__isnull": True},
        to=Status.CANCELLED,
        reason=Reason.GROUP_CANCELLED,
        text=f"Group {group_key} cancelled by {actor}.",
        expect=[Status.WAITING, Status.TO_SEND, Status.BACKEND_TEST_REQUIRED],
        fields={"next_attempt_at": None},
        actor=actor,
    )
    result = ActionResult(
        True, f"{plural(len(changed), 'message')} of group {group_key} cancelled.", changed
    )
    record_audit(
        actor=actor,
        action="cancel_group",
        object_type="message",
        object_ids=changed,
        result=result.text,
        data={"group_key": group_key},
    )
    return result


def _make_due(ids: list[int], *, actor: str) -> list[int]:
    now = timezone.now()
    changed: list[int] = []
    for status in (Status.WAITING, Status.TO_SEND):
        changed += transitions.transition_where(
            filters={"pk__in": ids, "claim_token__isnull": True},
            to=status,
            reason=Reason.SEND_NOW,
            text=f"{actor} asked to send it now.",
            expect=[status],
            fields={"next_attempt_at": now},
            actor=actor,
        )
    return changed


def send_outgoing(*, actor: str) -> ActionResult:
    """Make every stuck message due now; the workers send them at once."""
    ids = list(stuck_messages().values_list("id", flat=True))
    changed = _make_due(ids, actor=actor) if ids else []
    text = (
        f"{plural(len(changed), 'stuck message')} queued to be sent now."
        if changed
        else "There are no stuck messages."
    )
    no_worker = False
    if changed:
        text += held_back_note()
        if not live_workers().exists():
            # Due is not sent: the button must not read as if it had sent them.
            no_worker = True
            text += (
                " No worker is running, so nothing leaves until one runs: start one "
                "(outbound worker, or the worker service) and check the Workers page."
            )
    record_audit(
        actor=actor,
        action="send_outgoing",
        object_type="message",
        object_ids=changed,
        result=text,
    )
    return ActionResult(True, text, changed, warn=no_worker)


def held_back_note(groups: list[HeldStuck] | None = None) -> str:
    """What of the stuck messages only waits for its backend's pace (rate
    limit, pause, connection cap): being due now does not make those leave
    sooner, and the answer must not let the administrator believe it.
    ``groups`` is ``held_stuck()`` when the caller has read it already."""
    notes = []
    for h in held_stuck() if groups is None else groups:
        hold = h.hold
        at = timezone.localtime(hold.until).strftime("%H:%M:%S")
        if hold.kind == "rate_limit":
            why = f"its rate limit of {hold.rate} a minute (next slot at {at})"
        elif hold.kind == "paused":
            why = f"its pause after repeated throttling (until {at})"
        else:
            why = f"a free connection (all {hold.cap} it allows are in use)"
        notes.append(
            f" {h.count} of them only wait for backend {hold.backend.name}: {why}; "
            "they cannot leave sooner."
        )
    return "".join(notes)
