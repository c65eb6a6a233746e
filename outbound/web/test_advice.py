"""What a backend test result means and what to do next, in an administrator's
words. Pure data and one lookup, so the console, the API and the CLI say the
same thing for the same result."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TestAdvice:
    # Not a test case: keep pytest from collecting it where it is imported.
    __test__ = False

    reason: str
    ok: bool
    headline: str
    explanation: str
    next_step: str


_ADVICE: dict[str, tuple[str, str, str]] = {
    "ok": (
        "Success",
        "The server accepted the connection, the security setting, the login, the from "
        "address and a test recipient. Nothing was sent.",
        "Nothing to do: held messages of this backend are released and go out now.",
    ),
    "auth_failed": (
        "Authentication failed: the account or password is wrong",
        "The server refused the user name or the password.",
        "Type the current password (and check the user name), Save, then Test again.",
    ),
    "auth_unsupported": (
        "Authentication failed: the server offers no login here",
        "The server does not offer a login on this connection; most servers only allow it "
        "after STARTTLS.",
        "Set the security to STARTTLS or implicit TLS, or remove the user name if the relay "
        "needs no login. Save, then Test again.",
    ),
    "connection_refused": (
        "Connection refused",
        "Nothing accepts connections on that host and port.",
        "Check the port number (25, 465 or 587 usually) and that the firewall lets this "
        "machine reach the server, then Test again.",
    ),
    "timeout": (
        "Timed out",
        "The server did not answer in time; a firewall often drops the connection silently.",
        "Check the host, the port and the firewall, or raise the timeout, then Test again.",
    ),
    "host_not_found": (
        "Host not found",
        "The host name cannot be resolved to an address.",
        "Check the spelling of the host name, Save, then Test again.",
    ),
    "host_forbidden": (
        "Host forbidden by this deployment's policy",
        "The host name resolves to a private, loopback or link-local address, and "
        "OUTBOUND_FORBID_PRIVATE_HOSTS forbids connecting to those.",
        "Use the relay's public host name, or ask whoever runs Outbound to allow private "
        "hosts, then Test again.",
    ),
    "tls_failed": (
        "TLS failed",
        "The secure connection could not be set up: the certificate is not valid for this "
        "host name, is not trusted, or the server does not offer STARTTLS.",
        "Make the security setting match the port (465 implicit TLS, 587 STARTTLS) and use "
        "the host name written in the server's certificate, then Test again.",
    ),
    "sender_refused": (
        "Sender refused: the relay does not accept this from address",
        "The server refused the from address when the test announced it.",
        "Use a from address the relay allows for this account (often the account's own "
        "address or its domain), Save, then Test again.",
    ),
    "recipient_refused": (
        "Recipient refused: the relay does not relay",
        "The server refused to take mail for another domain from this connection.",
        "Check that the user name and password are set (most relays only relay for logged-in "
        "users) or ask the mail administrator to allow this machine to relay.",
    ),
    "secret_unreadable": (
        "Secret unreadable",
        "The stored password cannot be decrypted: the encryption key changed or the stored "
        "value was altered.",
        "Type the password again and Save, then Test again.",
    ),
    "connection_lost": (
        "Connection lost",
        "The server closed the connection in the middle of the test.",
        "Test again; if it repeats, ask the mail administrator to check the server's log.",
    ),
    "unexpected_reply": (
        "Unexpected reply",
        "The server answered something a mail server would not; it may be another service.",
        "Check the host and the port, then Test again.",
    ),
}


def advice_for(reason: str) -> TestAdvice:
    """The advice for a test result reason; an unknown reason gets a generic text."""
    known = _ADVICE.get(reason)
    if known is None:
        return TestAdvice(
            reason=reason,
            ok=False,
            headline="The test failed",
            explanation=f"The test ended with the result “{reason or 'unknown'}”.",
            next_step="Read the transcript below, check the settings, then Test again.",
        )
    headline, explanation, next_step = known
    return TestAdvice(
        reason=reason,
        ok=reason == "ok",
        headline=headline,
        explanation=explanation,
        next_step=next_step,
    )
