"""The SMTP transport against a real (aiosmtpd) server."""

from __future__ import annotations

import base64
import ssl
import time
from collections.abc import Callable, Iterator
from typing import Any

import idna
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from outbound.errors import (
    BackendConfigurationError,
    HeaderInjection,
    InvalidAddress,
    PermanentTransportError,
    TransientTransportError,
    TransportError,
)
from outbound.transports.base import Envelope
from outbound.transports.smtp import SmtpConfig, SmtpTransport, parse_queue_id
from tests.smtpd import SmtpTestServer

MakeServer = Callable[..., SmtpTestServer]

SENDER = "noreply@example.test"


def message(message_id: str = "<m1@example.test>", body: bytes = b"Hello.\r\n") -> bytes:
    return (
        b"From: Outbound <noreply@example.test>\r\n"
        b"To: someone@example.test\r\n"
        b"Subject: Test\r\n"
        b"Message-ID: " + message_id.encode() + b"\r\n"
        b"\r\n" + body
    )


def envelope(*recipients: str, message_id: str = "<m1@example.test>") -> Envelope:
    return Envelope(
        mail_from=SENDER,
        recipients=list(recipients or ["someone@example.test"]),
        message=message(message_id),
        message_id=message_id,
    )


def transport_for(server: SmtpTestServer, **config: Any) -> SmtpTransport:
    config.setdefault("timeout", 5.0)
    on_phase = config.pop("on_phase", None)
    return SmtpTransport(SmtpConfig(server.host, server.port, **config), on_phase=on_phase)


def tls_login_transport(server: SmtpTestServer, security: str, **config: Any) -> SmtpTransport:
    """A transport that logs in as user/pw (the servers' auth={"user": "pw"})
    over TLS (`security` "starttls" or "tls"), trusting the test CA."""
    return transport_for(
        server,
        security=security,
        username="user",
        password="pw",
        ssl_context=server.client_ssl_context(),
        **config,
    )


# --- delivery ---------------------------------------------------------------


def test_plain_send_returns_final_reply_and_queue_id(smtp_server: SmtpTestServer) -> None:
    smtp_server.configure(data_reply="250 2.0.0 Ok: queued as 9EA7B1E0AE5")
    with transport_for(smtp_server) as transport:
        result = transport.send(envelope("a@example.test"))

    assert result.code == 250
    assert result.enhanced_code == "2.0.0"
    assert result.reply == "2.0.0 Ok: queued as 9EA7B1E0AE5"
    assert result.queue_id == "9EA7B1E0AE5"
    assert [(r.address, r.accepted, r.code) for r in result.recipients] == [
        ("a@example.test", True, 250)
    ]
    [received] = smtp_server.messages
    assert received.mail_from == SENDER
    assert received.rcpt_tos == ["a@example.test"]
    assert received.message_id == "<m1@example.test>"
    assert received.raw == message()


def test_phases_are_reported_in_order_with_tls_and_auth(make_smtp_server: MakeServer) -> None:
    server = make_smtp_server(tls="starttls", auth={"user": "pw"})
    phases: list[str] = []
    transport = tls_login_transport(server, "starttls", on_phase=phases.append)
    with transport:
        transport.send(envelope())

    assert phases == ["connect", "tls", "auth", "mail", "rcpt", "data", "done"]


def test_three_messages_travel_over_one_connection(smtp_server: SmtpTestServer) -> None:
    with transport_for(smtp_server) as transport:
        for number in range(3):
            transport.send(envelope(message_id=f"<m{number}@example.test>"))

    assert smtp_server.connections == 1
    assert [m.message_id for m in smtp_server.messages] == [
        "<m0@example.test>",
        "<m1@example.test>",
        "<m2@example.test>",
    ]


def test_body_lines_starting_with_a_dot_and_bare_newlines_arrive_intact(
    smtp_server: SmtpTestServer,
) -> None:
    body = b".hidden\r\n..two\r\nbare\nline\r\n.\r\nend"
    env = Envelope(SENDER, ["a@example.test"], message(body=body))
    with transport_for(smtp_server) as transport:
        transport.send(env)

    [received] = smtp_server.messages
    assert received.raw.endswith(b"\r\n\r\n.hidden\r\n..two\r\nbare\r\nline\r\n.\r\nend\r\n")


def test_partial_refusal_is_recorded_per_recipient_and_data_still_sent(
    make_smtp_server: MakeServer,
) -> None:
    server = make_smtp_server(rcpt_replies={"gone@example.test": "550 5.1.1 No such user"})
    with transport_for(server) as transport:
        result = transport.send(envelope("a@example.test", "gone@example.test", "b@example.test"))

    assert result.code == 250
    outcomes = {r.address: (r.accepted, r.code, r.reply) for r in result.recipients}
    assert outcomes == {
        "a@example.test": (True, 250, "2.1.5 Ok"),
        "gone@example.test": (False, 550, "5.1.1 No such user"),
        "b@example.test": (True, 250, "2.1.5 Ok"),
    }
    assert [r.address for r in result.refused] == ["gone@example.test"]
    [received] = server.messages
    assert received.rcpt_tos == ["a@example.test", "b@example.test"]


@pytest.mark.parametrize("pipelining", [False, True])
def test_all_recipients_refused_with_550_is_permanent(
    make_smtp_server: MakeServer, pipelining: bool
) -> None:
    server = make_smtp_server(rcpt_reply="550 5.1.1 No such user", pipelining=pipelining)
    with transport_for(server) as transport:
        with pytest.raises(PermanentTransportError) as caught:
            transport.send(envelope("a@example.test", "b@example.test"))
        assert transport.is_open

    err = caught.value
    assert (err.reason, err.phase, err.code, err.enhanced_code) == (
        "recipients_refused",
        "rcpt",
        550,
        "5.1.1",
    )
    # Pipelined, DATA went out with the envelope and the server refused it
    # (no recipient); either way the transaction is reset and nothing arrives.
    assert ("DATA" in server.commands) is pipelining
    assert server.commands[-2:] == ["RSET", "QUIT"]
    assert server.messages == []


@pytest.mark.parametrize("reply", ["450 4.2.0 Mailbox busy", "552 5.2.2 Mailbox full"])
def test_all_recipients_deferred_or_mailbox_full_is_transient(
    make_smtp_server: MakeServer, reply: str
) -> None:
    server = make_smtp_server(rcpt_reply=reply)
    with transport_for(server) as transport, pytest.raises(TransientTransportError) as caught:
        transport.send(envelope())

    assert caught.value.reason == "recipient_deferred"
    assert caught.value.code == int(reply[:3])
    assert caught.value.phase == "rcpt"


def test_one_deferred_recipient_makes_a_total_refusal_transient(
    make_smtp_server: MakeServer,
) -> None:
    server = make_smtp_server(
        rcpt_replies={"a@example.test": "550 5.1.1 No", "b@example.test": "451 4.3.0 Later"}
    )
    with transport_for(server) as transport, pytest.raises(TransientTransportError) as caught:
        transport.send(envelope("a@example.test", "b@example.test"))

    assert caught.value.code == 451


def test_connection_is_reused_after_a_refused_message(make_smtp_server: MakeServer) -> None:
    server = make_smtp_server(mail_reply="553 5.7.1 Sender not allowed")
    with transport_for(server) as transport:
        with pytest.raises(PermanentTransportError) as caught:
            transport.send(envelope())
        assert caught.value.reason == "sender_refused"
        assert caught.value.phase == "mail"
        server.configure(mail_reply=None)
        result = transport.send(envelope())

    assert result.code == 250
    assert server.connections == 1
    assert "RSET" in server.commands


def test_reply_hook_changes_answers_per_command(make_smtp_server: MakeServer) -> None:
    def greylist_second(stage: str, argument: str) -> str | None:
        if stage == "rcpt" and argument == "second@example.test":
            return "450 4.2.0 Greylisted"
        return None

    server = make_smtp_server(reply_hook=greylist_second)
    with transport_for(server) as transport:
        result = transport.send(envelope("first@example.test", "second@example.test"))

    assert [(r.address, r.code) for r in result.recipients] == [
        ("first@example.test", 250),
        ("second@example.test", 450),
    ]


def test_sender_deferred_is_transient(make_smtp_server: MakeServer) -> None:
    server = make_smtp_server(mail_reply="451 4.3.0 Try later")
    with transport_for(server) as transport, pytest.raises(TransientTransportError) as caught:
        transport.send(envelope())

    assert caught.value.reason == "sender_deferred"


def test_5xx_after_the_dot_is_permanent_rejected(make_smtp_server: MakeServer) -> None:
    server = make_smtp_server(data_reply="554 5.7.1 Message rejected as spam")
    with transport_for(server) as transport:
        with pytest.raises(PermanentTransportError) as caught:
            transport.send(envelope())
        # The server closed the transaction itself: the next message can follow.
        server.configure(data_reply=None)
        assert transport.send(envelope()).code == 250

    err = caught.value
    assert (err.reason, err.phase, err.code, err.enhanced_code) == (
        "rejected",
        "data",
        554,
        "5.7.1",
    )
    assert err.reply == "5.7.1 Message rejected as spam"
    assert server.connections == 1


def test_4xx_after_the_dot_is_transient_deferred(make_smtp_server: MakeServer) -> None:
    server = make_smtp_server(data_reply="451 4.7.1 Greylisted, try again")
    with transport_for(server) as transport, pytest.raises(TransientTransportError) as caught:
        transport.send(envelope())

    assert (caught.value.reason, caught.value.phase, caught.value.code) == ("deferred", "data", 451)


def test_refusal_of_the_data_command_is_classified(make_smtp_server: MakeServer) -> None:
    server = make_smtp_server(data_command_reply="554 5.5.1 No valid recipients")
    with transport_for(server) as transport, pytest.raises(PermanentTransportError) as caught:
        transport.send(envelope())

    assert (caught.value.reason, caught.value.phase) == ("rejected", "data")


def test_421_closes_the_connection_and_is_transient(make_smtp_server: MakeServer) -> None:
    server = make_smtp_server(mail_reply="421 4.3.2 Shutting down")
    with transport_for(server) as transport:
        with pytest.raises(TransientTransportError) as caught:
            transport.send(envelope())
        assert not transport.is_open
        server.configure(mail_reply=None)
        assert transport.send(envelope()).code == 250

    assert caught.value.reason == "service_unavailable"
    assert server.connections == 2


def test_drop_after_the_dot_is_connection_lost_in_data_phase(make_smtp_server: MakeServer) -> None:
    server = make_smtp_server(drop_after_data=True)
    transport = transport_for(server)
    with pytest.raises(TransientTransportError) as caught:
        transport.send(envelope())

    assert (caught.value.reason, caught.value.phase) == ("connection_lost", "data")
    assert not transport.is_open
    assert [m.message_id for m in server.messages] == ["<m1@example.test>"]


@pytest.mark.parametrize("pipelining", [False, True])
def test_before_data_runs_once_before_the_server_sees_data(
    make_smtp_server: MakeServer, pipelining: bool
) -> None:
    server = make_smtp_server(pipelining=pipelining)
    seen: list[tuple[int, int]] = []

    def journal() -> None:
        seen.append((server.commands.count("DATA"), len(server.messages)))

    with transport_for(server) as transport:
        transport.send(envelope(), before_data=journal)

    # The message text has not left when the journal runs. Without
    # PIPELINING the DATA command has not either; pipelined, the journal
    # runs while the server reads the envelope, DATA included.
    assert len(seen) == 1 and seen[0][1] == 0
    if not pipelining:
        assert seen[0][0] == 0
    assert server.commands.count("DATA") == 1
    assert len(server.messages) == 1


@pytest.mark.parametrize("pipelining", [False, True])
def test_every_recipient_refused_sends_no_text_whenever_the_journal_ran(
    make_smtp_server: MakeServer, pipelining: bool
) -> None:
    server = make_smtp_server(rcpt_reply="550 5.1.1 No such user", pipelining=pipelining)
    calls: list[str] = []
    with transport_for(server) as transport, pytest.raises(PermanentTransportError):
        transport.send(envelope(), before_data=lambda: calls.append("called"))

    # One round trip: the journal was written while the server read the
    # envelope, so it ran although the recipients were refused; stepwise it
    # waits for the recipients. Either way no text left.
    assert calls == (["called"] if pipelining else [])
    assert server.messages == []


@pytest.mark.parametrize("pipelining", [False, True])
def test_a_failing_before_data_aborts_the_transaction(
    make_smtp_server: MakeServer, pipelining: bool
) -> None:
    server = make_smtp_server(pipelining=pipelining)

    def lost_lease() -> None:
        raise RuntimeError("lease lost")

    with transport_for(server) as transport:
        with pytest.raises(RuntimeError):
            transport.send(envelope(), before_data=lost_lease)
        # Pipelined, the server is past 354 and takes any byte as message
        # text: the only clean way out is to hang up.
        assert transport.is_open is not pipelining
        assert transport.send(envelope()).code == 250

    assert len(server.messages) == 1
    assert len(server.sessions) == (2 if pipelining else 1)


def test_pipelined_envelope_goes_out_before_the_first_reply(
    make_smtp_server: MakeServer,
) -> None:
    server = make_smtp_server(mail_reply="550 5.7.1 Sender refused")
    with transport_for(server) as transport:
        with pytest.raises(PermanentTransportError) as caught:
            transport.send(envelope("a@example.test", "b@example.test"))
        # Every reply of the batch was read: the connection is in step and
        # carries the next message.
        assert transport.is_open
        server.options.mail_reply = None
        assert transport.send(envelope()).code == 250

    assert (caught.value.reason, caught.value.phase, caught.value.code) == (
        "sender_refused",
        "mail",
        550,
    )
    # RCPT and DATA were written with MAIL, before its refusal came back.
    first = server.sessions[0].commands
    assert first[:6] == ["EHLO", "MAIL", "RCPT", "RCPT", "DATA", "RSET"]
    assert len(server.sessions) == 1
    assert len(server.messages) == 1


def test_pipelined_354_after_every_recipient_was_refused_hangs_up(
    make_smtp_server: MakeServer,
) -> None:
    # A server that wrongly accepts DATA with no recipient would take the
    # next bytes as message text: the client hangs up instead.
    server = make_smtp_server(
        rcpt_reply="550 5.1.1 No such user", data_command_reply="354 go ahead"
    )
    with transport_for(server) as transport:
        with pytest.raises(PermanentTransportError):
            transport.send(envelope())
        assert not transport.is_open

    assert server.messages == []


@pytest.mark.parametrize(
    ("stage", "phase"), [("connect", "connect"), ("mail", "mail"), ("data_end", "data")]
)
def test_a_server_that_hangs_times_out_within_the_timeout(
    make_smtp_server: MakeServer, stage: str, phase: str
) -> None:
    server = make_smtp_server(hang_at=stage)
    transport = transport_for(server, timeout=0.5)
    started = time.monotonic()
    with pytest.raises(TransientTransportError) as caught:
        transport.send(envelope())

    assert time.monotonic() - started < 2.0
    assert (caught.value.reason, caught.value.phase) == ("timeout", phase)
    assert not transport.is_open


def test_closed_port_is_connection_refused(closed_port: int) -> None:
    transport = SmtpTransport(SmtpConfig("127.0.0.1", closed_port, timeout=2))
    with pytest.raises(TransientTransportError) as caught:
        transport.send(envelope())

    assert (caught.value.reason, caught.value.phase) == ("connection_refused", "connect")


def test_unknown_host_is_a_configuration_error() -> None:
    transport = SmtpTransport(SmtpConfig("relay.does-not-exist.invalid", 25, timeout=2))
    with pytest.raises(BackendConfigurationError) as caught:
        transport.open()

    assert caught.value.reason == "host_not_found"


def test_banner_421_is_transient_and_554_a_configuration_error(
    make_smtp_server: MakeServer,
) -> None:
    busy = make_smtp_server(connect_banner="421 4.3.2 Too many connections")
    barred = make_smtp_server(connect_banner="554 5.7.1 Your IP is blocked")

    with pytest.raises(TransientTransportError) as deferred:
        transport_for(busy).open()
    with pytest.raises(BackendConfigurationError) as refused:
        transport_for(barred).open()

    assert deferred.value.reason == "service_unavailable"
    assert (refused.value.code, refused.value.phase) == (554, "connect")


# --- authentication and TLS -------------------------------------------------


def test_auth_success_then_send(make_smtp_server: MakeServer) -> None:
    server = make_smtp_server(auth={"user": "secret"})
    with transport_for(server, username="user", password="secret") as transport:
        transport.send(envelope())

    [session] = server.sessions
    assert session.auth_user == "user"
    assert server.auth_attempts == 1


def test_wrong_password_is_auth_failed_after_one_attempt(make_smtp_server: MakeServer) -> None:
    server = make_smtp_server(auth={"user": "secret"})
    transport = transport_for(server, username="user", password="wrong")
    with pytest.raises(BackendConfigurationError) as caught:
        transport.send(envelope())

    err = caught.value
    assert (err.reason, err.phase, err.code, err.enhanced_code) == (
        "auth_failed",
        "auth",
        535,
        "5.7.8",
    )
    assert server.auth_attempts == 1
    assert "MAIL" not in server.commands
    assert "wrong" not in str(err)


def test_username_without_server_auth_is_auth_unsupported(smtp_server: SmtpTestServer) -> None:
    transport = transport_for(smtp_server, username="user", password="secret")
    with pytest.raises(BackendConfigurationError) as caught:
        transport.open()

    assert caught.value.reason == "auth_unsupported"
    assert smtp_server.auth_attempts == 0


def test_server_requiring_auth_without_credentials_is_a_configuration_error(
    make_smtp_server: MakeServer,
) -> None:
    server = make_smtp_server(auth={"user": "secret"})
    with transport_for(server) as transport, pytest.raises(BackendConfigurationError) as caught:
        transport.send(envelope())

    assert (caught.value.code, caught.value.reason) == (530, "auth_required")


def test_starttls_with_the_test_ca_succeeds(make_smtp_server: MakeServer) -> None:
    server = make_smtp_server(tls="starttls", auth={"user": "pw"}, auth_require_tls=True)
    transport = tls_login_transport(server, "starttls")
    with transport:
        assert transport.send(envelope()).code == 250

    [session] = server.sessions
    assert session.tls
    assert session.commands[:4] == ["EHLO", "STARTTLS", "EHLO", "AUTH"]


@pytest.mark.parametrize(("tls", "security"), [("starttls", "starttls"), ("implicit", "tls")])
def test_tls_connection_is_reused_for_the_next_message(
    make_smtp_server: MakeServer, tls: str, security: str
) -> None:
    server = make_smtp_server(tls=tls)
    transport = transport_for(server, security=security, ssl_context=server.client_ssl_context())
    with transport:
        for _ in range(3):
            transport.send(envelope())
            time.sleep(0.02)  # let any late TLS records (session tickets) arrive

    assert server.connections == 1
    assert len(server.messages) == 3


@pytest.mark.parametrize(
    ("tls_names", "trusted", "reason"),
    [
        (("localhost", "127.0.0.1"), False, "tls_failed"),  # a CA the client does not trust
        # A trusted certificate for another name: told apart, with its names.
        (("mail.other.test",), True, "tls_wrong_host"),
    ],
)
def test_unverifiable_certificate_is_tls_failed(
    make_smtp_server: MakeServer, tls_names: tuple[str, ...], trusted: bool, reason: str
) -> None:
    server = make_smtp_server(tls="starttls", tls_names=tls_names, auth={"user": "pw"})
    context = server.client_ssl_context() if trusted else ssl.create_default_context()
    transport = transport_for(
        server, security="starttls", username="user", password="pw", ssl_context=context
    )
    with pytest.raises(BackendConfigurationError) as caught:
        transport.send(envelope())

    assert (caught.value.reason, caught.value.phase) == (reason, "tls")
    assert server.auth_attempts == 0
    assert "MAIL" not in server.commands


def test_starttls_not_advertised_is_tls_failed_with_no_auth_and_no_mail(
    make_smtp_server: MakeServer,
) -> None:
    server = make_smtp_server(tls="starttls", strip_starttls=True, auth={"user": "pw"})
    transport = tls_login_transport(server, "starttls")
    with pytest.raises(BackendConfigurationError) as caught:
        transport.send(envelope())

    assert caught.value.reason == "tls_failed"
    assert server.auth_attempts == 0
    assert "AUTH" not in server.commands
    assert "MAIL" not in server.commands
    assert "STARTTLS" not in server.commands


def test_implicit_tls(make_smtp_server: MakeServer) -> None:
    server = make_smtp_server(tls="implicit", auth={"user": "pw"}, auth_require_tls=True)
    phases: list[str] = []
    transport = tls_login_transport(server, "tls", on_phase=phases.append)
    with transport:
        assert transport.send(envelope()).code == 250

    [session] = server.sessions
    assert session.tls
    assert "STARTTLS" not in session.commands
    assert phases[:3] == ["connect", "tls", "auth"]


def test_implicit_tls_with_an_untrusted_certificate_is_tls_failed(
    make_smtp_server: MakeServer,
) -> None:
    server = make_smtp_server(tls="implicit", auth={"user": "pw"})
    transport = transport_for(server, security="tls", username="user", password="pw")
    with pytest.raises(BackendConfigurationError) as caught:
        transport.open()

    assert (caught.value.reason, caught.value.phase) == ("tls_failed", "tls")
    assert server.connections == 1
    assert server.auth_attempts == 0
    assert server.commands == []


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_a_certificate_for_another_host_names_the_hosts_it_is_for(
    make_smtp_server: MakeServer, security: str
) -> None:
    server = make_smtp_server(
        tls="starttls" if security == "starttls" else "implicit",
        tls_names=("mail.other.test", "*.relay.other.test", "192.0.2.7"),
        auth={"user": "pw"},
    )
    transport = transport_for(
        server,
        security=security,
        username="user",
        password="pw",
        ssl_context=server.client_ssl_context(),
    )
    with pytest.raises(BackendConfigurationError) as caught:
        transport.open()

    err = caught.value
    assert (err.reason, err.phase) == ("tls_wrong_host", "tls")
    assert str(err) == (
        f"127.0.0.1:{server.port} presented a certificate for mail.other.test, "
        "*.relay.other.test, 192.0.2.7, not for 127.0.0.1"
    )
    # The names were read over a connection that logged in and sent nothing.
    assert server.auth_attempts == 0
    assert not {"AUTH", "MAIL", "RCPT", "DATA"} & {c.split()[0] for c in server.commands}


def test_implicit_tls_against_a_plaintext_server_is_tls_failed(
    smtp_server: SmtpTestServer,
) -> None:
    transport = transport_for(smtp_server, security="tls")
    with pytest.raises(BackendConfigurationError) as caught:
        transport.open()

    assert caught.value.reason == "tls_failed"


def test_password_is_not_in_the_config_repr() -> None:
    config = SmtpConfig("smtp.example.test", 587, username="user", password="hunter2")

    assert "hunter2" not in repr(config)
    assert "hunter2" not in repr(SmtpTransport(config))


# --- envelope safety and internationalisation --------------------------------


@pytest.mark.parametrize(
    "recipient",
    ["a@example.test\r\nRCPT TO:<evil@example.test>", "a@example.test\n", "a\x00@example.test"],
)
def test_control_characters_in_an_address_are_refused_before_connecting(
    smtp_server: SmtpTestServer, recipient: str
) -> None:
    transport = transport_for(smtp_server)
    with pytest.raises(HeaderInjection):
        transport.send(envelope(recipient))

    assert smtp_server.connections == 0


def test_angle_bracket_in_the_sender_is_refused(smtp_server: SmtpTestServer) -> None:
    env = Envelope("a@example.test> SIZE=1", ["b@example.test"], message())
    with pytest.raises(HeaderInjection):
        transport_for(smtp_server).send(env)

    assert smtp_server.connections == 0


@pytest.mark.parametrize("head", [b"Subject: a\nBcc: x@example.test\r\n", b"Subject: a\rb\r\n"])
def test_bare_cr_or_lf_in_the_headers_is_refused(smtp_server: SmtpTestServer, head: bytes) -> None:
    env = Envelope(SENDER, ["a@example.test"], head + b"\r\nbody\r\n")
    with pytest.raises(HeaderInjection):
        transport_for(smtp_server).send(env)

    assert smtp_server.connections == 0


@pytest.mark.parametrize("recipient", ["", "no-at-sign", "a@example.test, b@example.test"])
def test_something_that_is_not_one_address_is_invalid(
    smtp_server: SmtpTestServer, recipient: str
) -> None:
    with pytest.raises(InvalidAddress):
        transport_for(smtp_server).send(envelope(recipient))


def test_null_sender_is_allowed(smtp_server: SmtpTestServer) -> None:
    env = Envelope("", ["a@example.test"], message())
    with transport_for(smtp_server) as transport:
        transport.send(env)

    assert "MAIL FROM:<>" in " ".join(smtp_server.lines)


def test_utf8_address_uses_smtputf8_when_offered(smtp_server: SmtpTestServer) -> None:
    with transport_for(smtp_server) as transport:
        transport.send(envelope("jürgen@bücher.example"))

    [received] = smtp_server.messages
    assert received.rcpt_tos == ["jürgen@bücher.example"]
    assert "SMTPUTF8" in received.mail_options


def test_utf8_headers_are_announced_with_smtputf8(smtp_server: SmtpTestServer) -> None:
    raw = "Subject: Grüße\r\nMessage-ID: <u@example.test>\r\n\r\nHallo\r\n".encode()
    with transport_for(smtp_server) as transport:
        transport.send(Envelope(SENDER, ["a@example.test"], raw))

    [received] = smtp_server.messages
    assert received.raw == raw
    assert "SMTPUTF8" in received.mail_options
    assert "BODY=8BITMIME" in received.mail_options


def test_idn_domain_is_punycoded_when_smtputf8_is_not_offered(
    make_smtp_server: MakeServer,
) -> None:
    server = make_smtp_server(smtputf8=False)
    with transport_for(server) as transport:
        transport.send(envelope("info@bücher.example"))

    [received] = server.messages
    assert received.rcpt_tos == ["info@xn--bcher-kva.example"]


def test_utf8_headers_are_never_sent_to_a_relay_without_smtputf8(
    make_smtp_server: MakeServer,
) -> None:
    server = make_smtp_server(smtputf8=False)
    raw = "Subject: Grüße\r\nMessage-ID: <u@example.test>\r\n\r\nHallo\r\n".encode()
    with transport_for(server) as transport, pytest.raises(PermanentTransportError) as caught:
        transport.send(Envelope(SENDER, ["a@example.test"], raw))

    assert caught.value.reason == "smtputf8_unsupported"
    assert "headers" in str(caught.value)
    assert server.messages == []
    assert "MAIL" not in server.commands


def test_an_idn_domain_goes_as_its_a_label_without_smtputf8_even_when_offered(
    smtp_server: SmtpTestServer,
) -> None:
    with transport_for(smtp_server) as transport:
        transport.send(envelope("info@bücher.example"))

    [received] = smtp_server.messages
    assert received.rcpt_tos == ["info@xn--bcher-kva.example"]
    assert "SMTPUTF8" not in received.mail_options


def test_utf8_local_part_without_smtputf8_is_permanent(make_smtp_server: MakeServer) -> None:
    server = make_smtp_server(smtputf8=False)
    with transport_for(server) as transport:
        with pytest.raises(PermanentTransportError) as caught:
            transport.send(envelope("jürgen@example.test"))
        assert transport.send(envelope()).code == 250

    assert caught.value.reason == "smtputf8_unsupported"
    assert server.connections == 1


def test_is_open_notices_a_server_that_hung_up(make_smtp_server: MakeServer) -> None:
    server = make_smtp_server()
    transport = transport_for(server)
    transport.open()
    assert transport.is_open

    server.stop()

    assert server.wait_for(lambda: not transport.is_open, timeout=2)


def test_send_reconnects_after_the_server_dropped_an_idle_connection(
    smtp_server: SmtpTestServer,
) -> None:
    with transport_for(smtp_server) as transport:
        transport.send(envelope())
        smtp_server.drop_connections()
        smtp_server.wait_for(lambda: not transport.is_open, timeout=2)
        assert transport.send(envelope()).code == 250

    assert smtp_server.connections == 2
    assert len(smtp_server.messages) == 2


def test_close_never_raises_even_when_the_server_is_gone(make_smtp_server: MakeServer) -> None:
    server = make_smtp_server()
    transport = transport_for(server)
    transport.open()
    server.stop()

    transport.close()
    transport.close()

    assert not transport.is_open


# --- queue ids --------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "queue_id"),
    [
        ("2.0.0 Ok: queued as 9EA7B1E0AE5", "9EA7B1E0AE5"),
        ("Ok: queued as 4Rk9Zx1y2Gz3", "4Rk9Zx1y2Gz3"),
        ("250 2.0.0 Ok: queued as 9EA7B1E0AE5", "9EA7B1E0AE5"),
        ("OK id=1abc-0002Xy-Qm", "1abc-0002Xy-Qm"),
        ("x9PKn5Ke012345 Message accepted for delivery", "x9PKn5Ke012345"),
        ("2.0.0 x9PKn5Ke012345 Message accepted for delivery", "x9PKn5Ke012345"),
        ("2.0.0 <5F3A2B1C> mail accepted", "5F3A2B1C"),
        ("Ok 0100018c2d3e4f5a-1b2c3d4e-5f6a-7b8c-9d0e-1f2a3b4c5d6e-000000", None),
        ("2.0.0 OK  1700000000 a640c23a62f3a-a9a1b2c3d4si123456ejc.123 - gsmtp", None),
        (
            "2.6.0 <abc@host.example> [InternalId=84078279328, Hostname=X.prod] "
            "Queued mail for delivery",
            "84078279328",
        ),
        ("2.0.0 Ok", ""),
        ("OK", ""),
        ("2.0.0 Message accepted", ""),
        ("", ""),
    ],
)
def test_parse_queue_id_recognises_common_relays(reply: str, queue_id: str | None) -> None:
    expected = queue_id
    if expected is None:  # long ids: check the recognised token rather than repeat it
        expected = reply.split()[1] if reply.startswith("Ok ") else reply.split()[3]
    assert parse_queue_id(reply) == expected


# --- backend test (probe) ---------------------------------------------------


def test_probe_succeeds_without_sending_a_message(smtp_server: SmtpTestServer) -> None:
    transport = transport_for(smtp_server)
    result = transport.probe(mail_from=SENDER, rcpt_to="a@example.test")

    assert (result.ok, result.reason, result.phase, result.code) == (True, "ok", "data", 354)
    assert result.transcript[0].startswith("< 220")
    assert "> DATA" in result.transcript
    assert result.transcript[-1].startswith("< 354")
    assert transport.transcript() == result.transcript
    time.sleep(0.2)  # let the server notice the hang-up
    assert smtp_server.messages == []
    assert smtp_server.commands.count("DATA") == 1


@pytest.mark.parametrize("mechanisms", [("PLAIN", "LOGIN"), ("LOGIN",)])
def test_probe_auth_failure_keeps_credentials_out_of_the_transcript(
    make_smtp_server: MakeServer, mechanisms: tuple[str, ...]
) -> None:
    username, password = "probe-user", "wrong-password"
    server = make_smtp_server(auth={username: "right-password"}, auth_mechanisms=mechanisms)
    transport = transport_for(server, username=username, password=password)
    result = transport.probe(mail_from=SENDER, rcpt_to="a@example.test")

    assert (result.ok, result.reason, result.phase, result.code) == (
        False,
        "auth_failed",
        "auth",
        535,
    )
    text = "\n".join(result.transcript)
    for secret in [
        password,
        username,
        base64.b64encode(password.encode()).decode(),
        base64.b64encode(username.encode()).decode(),
        base64.b64encode(f"\0{username}\0{password}".encode()).decode(),
    ]:
        assert secret not in text
    assert "> AUTH ***" in result.transcript
    if mechanisms == ("LOGIN",):
        assert result.transcript.count("< 334 ***") == 2
        assert result.transcript.count("> ***") == 2
    assert server.auth_attempts == 1


def test_probe_sender_refused(make_smtp_server: MakeServer) -> None:
    server = make_smtp_server(mail_reply="553 5.7.1 Sender address rejected")
    result = transport_for(server).probe(mail_from=SENDER, rcpt_to="a@example.test")

    assert (result.ok, result.reason, result.phase, result.code) == (
        False,
        "sender_refused",
        "mail",
        553,
    )
    assert result.reply == "5.7.1 Sender address rejected"


def test_probe_recipient_refused(make_smtp_server: MakeServer) -> None:
    server = make_smtp_server(rcpt_reply="550 5.1.1 No such user")
    result = transport_for(server).probe(mail_from=SENDER, rcpt_to="a@example.test")

    assert (result.ok, result.reason, result.phase, result.code) == (
        False,
        "recipient_refused",
        "rcpt",
        550,
    )
    assert "DATA" not in server.commands


@pytest.mark.parametrize("stage", ["connect", "rcpt"])
def test_probe_returns_within_its_deadline_when_the_server_never_answers(
    make_smtp_server: MakeServer, stage: str
) -> None:
    server = make_smtp_server(hang_at=stage)
    transport = transport_for(server, timeout=30.0)
    started = time.monotonic()
    result = transport.probe(mail_from=SENDER, rcpt_to="a@example.test", deadline=2)

    assert time.monotonic() - started < 3
    assert result.elapsed < 3
    assert (result.ok, result.reason) == (False, "timeout")


def test_probe_tls_failed(make_smtp_server: MakeServer) -> None:
    server = make_smtp_server(tls="starttls", strip_starttls=True)
    transport = transport_for(server, security="starttls", ssl_context=server.client_ssl_context())
    result = transport.probe(mail_from=SENDER, rcpt_to="a@example.test")

    assert (result.ok, result.reason, result.phase) == (False, "tls_failed", "tls")
    assert "MAIL" not in server.commands


def test_probe_reports_an_unusable_sender_instead_of_raising(smtp_server: SmtpTestServer) -> None:
    result = transport_for(smtp_server).probe(
        mail_from="Outbound <noreply@example.test>", rcpt_to="a@example.test"
    )

    assert (result.ok, result.reason, result.phase) == (False, "sender_refused", "mail")
    assert smtp_server.connections == 0


def test_probe_reports_a_recipient_the_server_cannot_take(make_smtp_server: MakeServer) -> None:
    server = make_smtp_server(smtputf8=False)
    result = transport_for(server).probe(mail_from=SENDER, rcpt_to="jürgen@example.test")

    assert (result.ok, result.reason, result.phase) == (False, "recipient_refused", "rcpt")
    assert "SMTPUTF8" in result.reply
    assert "MAIL" not in server.commands


def test_probe_connection_refused_and_unknown_host(closed_port: int) -> None:
    refused = SmtpTransport(SmtpConfig("127.0.0.1", closed_port)).probe(
        mail_from=SENDER, rcpt_to="a@example.test"
    )
    unknown = SmtpTransport(SmtpConfig("nowhere.invalid", 25)).probe(
        mail_from=SENDER, rcpt_to="a@example.test"
    )

    assert (refused.ok, refused.reason) == (False, "connection_refused")
    assert (unknown.ok, unknown.reason) == (False, "host_not_found")


# --- hostile recipients -----------------------------------------------------


@pytest.fixture(scope="module")
def shared_server() -> Iterator[SmtpTestServer]:
    with SmtpTestServer() as server:
        yield server


_HOSTILE = list('\r\n\x00<>,; \t":\x0b\x85\u2028')
_BENIGN = st.text(alphabet=st.sampled_from(list("abcxyz019.-_+é")), min_size=1, max_size=8)


@st.composite
def hostile_text(draw: st.DrawFn) -> str:
    """An address-like string with zero to three hostile characters put in anywhere."""
    text = f"{draw(_BENIGN)}@{draw(_BENIGN)}.test"
    for _ in range(draw(st.integers(0, 3))):
        position = draw(st.integers(0, len(text)))
        text = text[:position] + draw(st.sampled_from(_HOSTILE)) + text[position:]
    return text


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile=hostile_text())
def test_hostile_recipient_never_adds_a_recipient(
    shared_server: SmtpTestServer, hostile: str
) -> None:
    intended = list(dict.fromkeys([hostile, "good@example.test"]))
    before = len(shared_server.lines)
    transport = SmtpTransport(SmtpConfig(shared_server.host, shared_server.port, timeout=5))
    try:
        transport.send(envelope(*intended))
    except (HeaderInjection, InvalidAddress):
        event("refused before sending")
        assert shared_server.lines[before:] == []
        return
    except TransportError:
        event("refused by the server")
    else:
        event("sent")
    finally:
        transport.close()

    rcpt_lines = [line for line in shared_server.lines[before:] if line.startswith("RCPT")]
    assert rcpt_lines == [f"RCPT TO:<{_on_the_wire(address)}>" for address in intended]


def _on_the_wire(address: str) -> str:
    """An address as the transport sends it: an international domain with an
    ASCII local part as its A-label, needing no SMTPUTF8."""
    local, _, domain = address.rpartition("@")
    if local.isascii() and not domain.isascii():
        try:
            return f"{local}@{idna.encode(domain, uts46=True).decode('ascii')}"
        except idna.IDNAError:
            return address
    return address
