"""What a backend test result means and what to do next, in an administrator's
words. Pure data and one lookup, so the console, the API and the CLI say the
same thing for the same result.

The words depend on what was tested: an SMTP server is tested by connecting,
logging in and announcing a sender and a recipient; Twilio by fetching the
account; an HTTP gateway by requesting its test URL; the console and
in-memory SMS backends need no test at all. A result is explained in the
terms of its own backend kind, never in another's."""

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


# SMTP servers (kind "smtp", every email backend).
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
    "tls_wrong_host": (
        "TLS failed: the certificate is for another host name",
        "The server presented a certificate for other names than the host this backend "
        "connects to (the reply below names them), so the connection cannot be trusted.",
        "Set the host to one of the names the certificate is for, or have the server's "
        "certificate reissued to include this host name, then Test again.",
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


_RELEASED = "Nothing to do: held messages of this backend are released and go out now."

# SMS providers reached over HTTP (Twilio, an HTTP gateway), for results that
# read the same for both.
_HTTP_PROVIDER_ADVICE: dict[str, tuple[str, str, str]] = {
    "connection_refused": (
        "Connection refused",
        "Nothing accepts connections at the provider's address and port, so no answer came.",
        "Check the address (host and port) and that the firewall lets this machine reach "
        "the provider, then Test again.",
    ),
    "timeout": (
        "Timed out",
        "The provider did not answer in time; a firewall often drops the connection silently.",
        "Check the address and the firewall, or raise the timeout, then Test again.",
    ),
    "host_not_found": (
        "Host not found",
        "The provider's host name cannot be resolved to an address.",
        "Check the spelling of the host name in the address, Save, then Test again.",
    ),
    "host_forbidden": (
        "Host forbidden by this deployment's policy",
        "The provider's host name resolves to a private, loopback or link-local address, "
        "and OUTBOUND_FORBID_PRIVATE_HOSTS forbids connecting to those.",
        "Use the provider's public address, or ask whoever runs Outbound to allow private "
        "hosts, then Test again.",
    ),
    "tls_failed": (
        "TLS failed",
        "The HTTPS connection could not be set up: the provider's certificate is not valid "
        "for this host name or is not trusted.",
        "Use the host name written in the provider's certificate (an https:// address), "
        "then Test again.",
    ),
    "secret_unreadable": (
        "Secret unreadable",
        "The stored auth token or secret cannot be decrypted: the encryption key changed or "
        "the stored value was altered.",
        "Type the auth token or secret again and Save, then Test again.",
    ),
    "connection_lost": (
        "Connection lost",
        "The provider closed the connection before it answered.",
        "Test again; if it repeats, check the provider's status page.",
    ),
}

# Per backend kind: what differs from the texts above.
_KIND_ADVICE: dict[str, dict[str, tuple[str, str, str]]] = {
    "twilio": {
        "ok": (
            "Success",
            "Twilio accepted the account SID and auth token, and the account is active. "
            "Nothing was sent.",
            f"{_RELEASED} To check the sender as well, use Send a real test SMS.",
        ),
        "auth_failed": (
            "Authentication failed: the account SID or auth token is wrong",
            "Twilio refused the account SID or the auth token.",
            "Type the current auth token (and check the account SID), Save, then Test again.",
        ),
        "unexpected_reply": (
            "Unexpected answer",
            "Twilio answered, but not as expected: the account is suspended or closed, or the "
            "Twilio API address leads to another service.",
            "Check the account in Twilio's console and the Twilio API address (leave it "
            "empty for Twilio's own), then Test again.",
        ),
    },
    "http": {
        "ok": (
            "Success",
            "The gateway's test URL answered with success to a request carrying the "
            "configured headers and secret. Nothing was sent.",
            f"{_RELEASED} To check the body template and the sender as well, use Send a real "
            "test SMS.",
        ),
        "auth_failed": (
            "Authentication failed: the gateway refused the credentials",
            "The test URL answered 401 or 403 to the configured headers and secret.",
            "Type the current API secret, check the header that carries it ({secret}), Save, "
            "then Test again.",
        ),
        "unexpected_reply": (
            "Unexpected answer",
            "The test URL answered with a status that is neither success nor a refusal of "
            "the credentials.",
            "Check the test URL and the test method with the gateway's documentation, then "
            "Test again.",
        ),
        "not_configured": (
            "No test URL",
            "The gateway has no test URL, so it cannot be tested without sending a message.",
            "Enter a test URL that answers 2xx to valid credentials (an account or balance "
            "URL of the gateway, for instance), Save, then Test again.",
        ),
    },
    "console": {
        "ok": (
            "Success",
            "The console backend has nothing to connect to: it prints each SMS in the "
            "worker's output instead of sending it. No phone receives anything.",
            "Nothing to do: held messages of this backend are released and printed by the "
            "worker. To reach phones, use a Twilio or HTTP gateway backend.",
        ),
    },
    "locmem": {
        "ok": (
            "Success",
            "The in-memory backend has nothing to connect to: it keeps each SMS in the "
            "worker's memory, for automated tests. No phone receives anything.",
            "Nothing to do: held messages of this backend are released and kept in memory. "
            "To reach phones, use a Twilio or HTTP gateway backend.",
        ),
    },
}


def advice_for(reason: str, *, kind: str) -> TestAdvice:
    """The advice for a test result reason of a backend of ``kind`` (its
    ``Backend.kind``); an unknown reason gets a generic text."""
    if kind == "smtp":
        known = _ADVICE.get(reason)
    else:
        known = _KIND_ADVICE.get(kind, {}).get(reason) or _HTTP_PROVIDER_ADVICE.get(reason)
    if known is None and reason == "ok":
        known = ("Success", "The test succeeded. Nothing was sent.", _RELEASED)
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
