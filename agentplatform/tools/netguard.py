"""Keep HTTP tools away from the platform's own network.

An agent's webhook URL is written by whoever edits the agent, and the model
chooses when to call it. Without a guard, a tool pointed at ``http://127.0.0.1``,
``http://10.0.0.5`` or a cloud metadata address (``169.254.169.254``) would let
an agent file reach services that were never meant to face the outside. So a
tool may only reach globally routable addresses unless it sets
``allow_private_network: true``.

How the check works, and its limits:

* The host name is resolved first (``getaddrinfo`` on the event loop) and
  *every* address it resolves to is checked; one private address among public
  ones refuses the whole call, so a name cannot smuggle a private address in
  behind a public one.
* IPv4-mapped (``::ffff:a.b.c.d``), 6to4 (``2002::/16``) and NAT64
  (``64:ff9b::/96``) IPv6 addresses are judged by the IPv4 address they carry.
* DNS rebinding (a name that resolves to a public address when checked and to a
  private one when connected): for plain ``http`` the caller connects to the
  very address that was checked (see ``webhook.py``), so a second lookup never
  happens. For ``https`` the connection is made by name and certificate
  verification is what stops a rebound name: a private service cannot present a
  valid certificate for the attacker's name. That holds only while the HTTP
  client verifies certificates (httpx does by default).
* An HTTP proxy configured on the client sees only the name; the check still
  runs, but the proxy does its own lookup.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable

from agentplatform.errors import ToolError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# host, port -> every address the name resolves to (as text).
Resolver = Callable[[str, int], Awaitable[list[str]]]

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")

# Checked in order; the first that matches names the refusal. The last entry
# catches what the named ranges miss (e.g. 100.64.0.0/10, 192.0.0.0/24).
_BLOCKED: tuple[tuple[str, Callable[[IPAddress], bool]], ...] = (
    ("an unspecified address", lambda a: a.is_unspecified),
    ("a loopback address", lambda a: a.is_loopback),
    ("a link-local address", lambda a: a.is_link_local),
    ("a multicast address", lambda a: a.is_multicast),
    ("a reserved address", lambda a: a.is_reserved),
    ("a private address", lambda a: a.is_private),
    ("not a globally routable address", lambda a: not a.is_global),
)


class BlockedAddressError(ToolError):
    """A tool's host is, or resolves to, an address tools may not reach."""


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries, if it is one of the forms that
    route to IPv4 (mapped, 6to4, NAT64); otherwise None."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def blocked_reason(address: IPAddress) -> str | None:
    """Why ``address`` may not be reached by a tool, or None if it may.

    Pure: no lookups. The reason is a phrase such as ``"a loopback address"``.
    """
    inner = embedded_ipv4(address)
    if inner is not None:
        reason = blocked_reason(inner)
        return None if reason is None else f"{reason} (it carries IPv4 {inner})"
    for reason, matches in _BLOCKED:
        if matches(address):
            return reason
    return None


def parse_ip(host: str) -> IPAddress | None:
    """``host`` as an IP address if it is a literal (brackets and zone allowed)."""
    text = host.strip("[]").split("%", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


async def system_resolver(host: str, port: int) -> list[str]:
    """Resolve ``host`` with the system resolver, without blocking the loop."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: dict[str, None] = {}
    for _family, _type, _proto, _canon, sockaddr in infos:
        seen.setdefault(str(sockaddr[0]), None)
    return list(seen)


async def resolve_allowed(
    host: str,
    port: int,
    *,
    allow_private: bool,
    resolver: Resolver = system_resolver,
) -> list[IPAddress]:
    """Every address ``host`` resolves to, after checking each one.

    Raises ``BlockedAddressError`` naming the host, the address and the reason
    when any address is refused (unless ``allow_private``), and ``ToolError``
    when the name does not resolve. Addresses keep the resolver's order.
    """
    literal = parse_ip(host)
    if literal is not None:
        addresses: list[IPAddress] = [literal]
    else:
        try:
            resolved = await resolver(host, port)
        except (OSError, UnicodeError) as exc:
            raise ToolError(f"could not resolve host {host!r}: {exc}") from exc
        addresses = [a for a in (parse_ip(text) for text in resolved) if a is not None]
        if not addresses:
            raise ToolError(f"could not resolve host {host!r}: no addresses")
    if not allow_private:
        for address in addresses:
            reason = blocked_reason(address)
            if reason is not None:
                subject = host if literal is not None else f"{host} resolves to {address}, which"
                raise BlockedAddressError(
                    f"refused to call {host}: {subject} is {reason}; "
                    "tools may only reach public addresses unless the tool sets "
                    "allow_private_network: true"
                )
    return addresses
