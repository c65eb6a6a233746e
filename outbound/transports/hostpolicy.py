"""The deployment's host policy (OUTBOUND_FORBID_PRIVATE_HOSTS) applied before
a connection is opened: resolve once, ask the policy about every address,
then connect to a checked address. Protocol plumbing only: the policy itself
comes from the caller (outbound.conf.host_policy)."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

from outbound.errors import BackendConfigurationError


def host_forbidden(host: str, address: str) -> BackendConfigurationError:
    return BackendConfigurationError(
        f"{host} resolves to {address}, which the host policy of this deployment "
        "forbids (private, loopback or link-local address).",
        phase="connect",
        reason="host_forbidden",
    )


def checked_addresses(
    host: str,
    port: int,
    address_allowed: Callable[[str], bool],
    *,
    forbidden: Callable[[str, str], Exception] = host_forbidden,
) -> list[tuple[int, Any]]:
    """Resolve ``host`` once and ask the policy about every address it gave.

    Returns (family, socket address) pairs to connect to, in the resolver's
    order; the caller connects to these, never to the name again, so a DNS
    answer that changes between the check and the connection cannot steer
    it elsewhere. Raises ``BackendConfigurationError`` (host_forbidden)
    (or what ``forbidden`` makes of the name and the address) before any
    packet reaches a forbidden address: a refused connection or an SMTP
    greeting would otherwise tell which internal ports are open.
    ``socket.gaierror`` from the resolver is left to the caller."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    pairs: list[tuple[int, Any]] = []
    for family, _type, _proto, _name, sockaddr in infos:
        address = str(sockaddr[0])
        if not address_allowed(address):
            raise forbidden(host, address)
        if (family, sockaddr) not in pairs:
            pairs.append((family, sockaddr))
    return pairs


def connect_checked(
    host: str, port: int, *, timeout: float, address_allowed: Callable[[str], bool]
) -> socket.socket:
    """A TCP connection to one of the addresses ``checked_addresses`` allowed."""
    last: OSError | None = None
    for family, sockaddr in checked_addresses(host, port, address_allowed):
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(sockaddr)
        except OSError as err:
            sock.close()
            last = err
            continue
        return sock
    raise last or OSError(f"{host} has no address to connect to")
