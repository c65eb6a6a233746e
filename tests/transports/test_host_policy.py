"""OUTBOUND_FORBID_PRIVATE_HOSTS: the name is resolved, every address is
checked, and only then is a connection opened, to the address that was
checked. Host names resolve through a patched ``socket.getaddrinfo`` (the
standard library's resolver, not our code) so a public-looking name can
answer with a loopback address, as an attacker's DNS would."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from outbound.errors import BackendConfigurationError
from outbound.models import Backend
from outbound.services.backends import save_backend_settings, test_backend
from outbound.transports.http_sms import HttpSmsTransport
from tests.http_gateway_server import GatewayTestServer
from tests.transports.test_http_sms import config_for, envelope
from tests.web.conftest import admin_client, admin_user_, make_user  # noqa: F401  (fixtures)

NAME = "relay.internal-dns.example"


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A TCP port that only listens: a connection to it completes in the
    kernel's backlog even though nobody accepts, so it can be counted."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.setblocking(False)
    yield sock
    sock.close()


def _connections(sock: socket.socket) -> int:
    count = 0
    while True:
        try:
            conn, _ = sock.accept()
        except BlockingIOError:
            return count
        conn.close()
        count += 1


@pytest.fixture
def resolve_to(monkeypatch: pytest.MonkeyPatch) -> Callable[..., list[str]]:
    """Make NAME resolve to the given addresses, one answer per lookup
    (the last one repeats); returns the list of names looked up."""
    real = socket.getaddrinfo
    looked_up: list[str] = []

    def install(*answers: str) -> list[str]:
        pending = list(answers)

        def fake(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
            if host != NAME:
                return real(host, port, *args, **kwargs)
            looked_up.append(host)
            address = pending.pop(0) if len(pending) > 1 else pending[0]
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(port or 0)))]

        monkeypatch.setattr(socket, "getaddrinfo", fake)
        return looked_up

    return install


@pytest.mark.django_db
def test_a_name_that_resolves_to_loopback_is_refused_before_any_connection(
    settings: Any, listener: socket.socket, resolve_to: Callable[..., list[str]]
) -> None:
    port = listener.getsockname()[1]
    resolve_to("127.0.0.1")
    settings.OUTBOUND_FORBID_PRIVATE_HOSTS = True
    backend = save_backend_settings(
        data={
            "name": "Relay",
            "host": NAME,
            "port": port,
            "security": "none",
            "from_address": "noreply@example.com",
            "is_default": True,
            "timeout": 5,
        },
        actor="admin",
    )
    result = test_backend(backend)
    assert (result.ok, result.reason) == (False, "host_forbidden")
    assert f"{NAME} resolves to 127.0.0.1" in result.reply
    # Not even a TCP handshake: the answer tells nothing about the port.
    assert _connections(listener) == 0
    # With the policy off the same backend connects (and the listener sees it).
    settings.OUTBOUND_FORBID_PRIVATE_HOSTS = False
    test_backend(Backend.objects.get(pk=backend.pk))
    assert _connections(listener) == 1


def test_the_gateway_is_reached_at_the_checked_address(
    resolve_to: Callable[..., list[str]],
) -> None:
    with GatewayTestServer() as gateway:
        port = urlsplit(gateway.url("/")).port
        resolve_to("127.0.0.1")
        asked: list[str] = []

        def policy(address: str) -> bool:
            asked.append(address)
            return address == "127.0.0.1"

        transport = HttpSmsTransport(
            config_for(gateway, url=f"http://{NAME}:{port}/v1/messages", address_allowed=policy)
        )
        transport.send(envelope())
        assert len(gateway.requests) == 1
        assert set(asked) == {"127.0.0.1"}


def test_a_second_dns_answer_is_checked_before_the_connection_and_never_reached(
    resolve_to: Callable[..., list[str]],
) -> None:
    # A DNS answer that changes between the check and the connection
    # (rebinding): first an allowed address, then a forbidden one that listens.
    rebound = socket.socket()
    rebound.bind(("127.0.0.2", 0))
    rebound.listen(8)
    rebound.setblocking(False)
    port = rebound.getsockname()[1]
    resolve_to("127.0.0.1", "127.0.0.2")
    try:
        with GatewayTestServer() as gateway:
            transport = HttpSmsTransport(
                config_for(
                    gateway,
                    url=f"http://{NAME}:{port}/v1/messages",
                    address_allowed=lambda address: address == "127.0.0.1",
                )
            )
            with pytest.raises(BackendConfigurationError) as err:
                transport.send(envelope())
        assert err.value.reason == "host_forbidden"
        assert _connections(rebound) == 0
    finally:
        rebound.close()


def test_the_gateway_refuses_a_forbidden_answer_before_connecting(
    resolve_to: Callable[..., list[str]], listener: socket.socket
) -> None:
    port = listener.getsockname()[1]
    resolve_to("127.0.0.1")
    with GatewayTestServer() as gateway:
        transport = HttpSmsTransport(
            config_for(
                gateway,
                url=f"http://{NAME}:{port}/v1/messages",
                address_allowed=lambda _address: False,
            )
        )
        with pytest.raises(BackendConfigurationError) as err:
            transport.send(envelope())
    assert err.value.reason == "host_forbidden"
    assert _connections(listener) == 0


@pytest.mark.django_db
def test_the_settings_page_says_when_the_policy_is_off(settings: Any, admin_client: Any) -> None:  # noqa: F811
    settings.OUTBOUND_FORBID_PRIVATE_HOSTS = False
    page = admin_client.get("/settings/").content.decode()
    assert "Backends may point at private addresses." in page
    assert "OUTBOUND_FORBID_PRIVATE_HOSTS=1" in page
    settings.OUTBOUND_FORBID_PRIVATE_HOSTS = True
    page = admin_client.get("/settings/").content.decode()
    assert "private-hosts-policy" not in page
