"""The direct writer of plain messages produces exactly the bytes the email
package makes of them, and leaves everything else to the email package."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes, policy

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from outbound.compose import _email_package, _plain_email, build_email
from outbound.models import Message, Recipient

CREATED = datetime(2026, 11, 28, 3, 8, 29, tzinfo=UTC)


def _message(**fields: object) -> Message:
    values: dict[str, object] = {
        "from_address": "Outbound <noreply@example.com>",
        "subject": "Your task",
        "text_body": "Hello",
        "message_id": "<20261128.abc123@example.com>",
        "created_at": CREATED,
        "headers": {},
        "reply_to": [],
    }
    values.update(fields)
    return Message(**values)


def _rcpt(address: str, name: str = "", kind: str = Recipient.Kind.TO) -> Recipient:
    return Recipient(address=address, name=name, kind=kind)


def test_a_plain_message_is_written_directly_and_identically() -> None:
    message = _message()
    recipients = [_rcpt("ann@example.com", "Ann Lee"), _rcpt("bob@example.com", kind="cc")]
    direct = _plain_email(message, recipients)
    assert direct is not None
    assert direct == _email_package(message, recipients, [])
    parsed = message_from_bytes(direct, policy=policy.SMTP)
    assert parsed["Message-ID"] == message.message_id
    assert parsed["To"] == "Ann Lee <ann@example.com>"
    assert parsed.get_content().strip() == "Hello"


def test_long_lines_and_non_ascii_bodies_are_encoded_like_the_email_package() -> None:
    r = [_rcpt("ann@example.com")]
    for text in ("Hello " * 40, "Grüße " * 40, "é" * 500, "line\n" * 30 + "x" * 100):
        message = _message(text_body=text)
        direct = _plain_email(message, r)
        assert direct is not None
        assert direct == _email_package(message, r, [])
        assert direct.isascii()
        parsed = message_from_bytes(direct, policy=policy.SMTP)
        assert parsed.get_content().replace("\r\n", "\n").rstrip("\n") == text.rstrip("\n")


def test_what_needs_the_email_package_goes_through_it() -> None:
    r = [_rcpt("ann@example.com")]
    assert _plain_email(_message(subject="Grüße"), r) is None
    assert _plain_email(_message(text_body="Grüße"), r) is None  # 8-bit body
    assert _plain_email(_message(subject="x " * 40), r) is None
    assert _plain_email(_message(subject="=?utf-8?q?x?="), r) is None
    assert _plain_email(_message(html_body="<p>x</p>"), r) is None
    assert _plain_email(_message(headers={"X-Tag": "a"}), r) is None
    assert _plain_email(_message(reply_to=["a@example.com"]), r) is None
    assert _plain_email(_message(), [_rcpt("ann@example.com", "Lee, Ann")]) is None
    assert _plain_email(_message(), [_rcpt("anné@example.com")]) is None
    # The general path still encodes: a non-ASCII subject becomes an encoded word.
    assert b"Subject: =?utf-8?" in build_email(_message(subject="Grüße"), r, [])


_printable = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
_text = st.text(
    st.one_of(
        st.characters(min_codepoint=32, max_codepoint=126),
        st.sampled_from(["\n", "\r", "\t", "é", "\x0b", " ", "=", ".", "\x00", "€"]),
    ),
    max_size=400,
)
_local = st.from_regex(r"[a-z0-9][a-z0-9._+-]{0,10}[a-z0-9]", fullmatch=True)
_word = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=12)
# Single-spaced words: most of these take the direct path.
_words = st.lists(_word, min_size=1, max_size=6).map(" ".join)
_names = st.one_of(st.just(""), _printable, _words)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    subject=st.one_of(_printable, _words),
    text=_text,
    html=st.one_of(st.just(""), _text),
    to=st.lists(st.tuples(_local, _names), max_size=3),
    cc=st.lists(st.tuples(_local, _names), max_size=2),
    to_user=_names,
    sender_name=_names,
)
def _direct_bytes_equal_the_email_packages_whenever_written(
    # Filled with whether each example took the direct path.
    taken: list[bool],
    subject: str,
    text: str,
    html: str,
    to: list[tuple[str, str]],
    cc: list[tuple[str, str]],
    to_user: str,
    sender_name: str,
) -> None:
    sender = f'"{sender_name}" <noreply@example.com>' if sender_name else "noreply@example.com"
    message = _message(
        subject=subject, text_body=text, html_body=html, to_user=to_user, from_address=sender
    )
    recipients = [_rcpt(f"{local}@example.com", name) for local, name in to] + [
        _rcpt(f"{local}@example.org", name, kind="cc") for local, name in cc
    ]
    direct = _plain_email(message, recipients)
    taken.append(direct is not None)
    if direct is not None:
        assert direct == _email_package(message, recipients, [])


def test_direct_bytes_equal_the_email_packages_whenever_written() -> None:
    taken: list[bool] = []
    _direct_bytes_equal_the_email_packages_whenever_written(taken)
    # The comparison above means something only where the direct path was
    # taken: about a quarter of the 400 examples when measured (86 to 124 in
    # five runs), and the email package's path for the rest.
    assert sum(taken) >= 20, f"direct path taken in {sum(taken)} of {len(taken)} examples"
    assert taken.count(False) >= 20
