from __future__ import annotations

import ipaddress

import pytest

from agentplatform.errors import ToolError
from agentplatform.tools.netguard import (
    BlockedAddressError,
    blocked_reason,
    embedded_ipv4,
    parse_ip,
    resolve_allowed,
    system_resolver,
)

BLOCKED = [
    ("127.0.0.1", "loopback"),
    ("127.8.9.10", "loopback"),
    ("::1", "loopback"),
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.254", "private"),
    ("192.168.1.20", "private"),
    ("fc00::1", "private"),
    ("fd12:3456::1", "private"),
    ("169.254.169.254", "link-local"),
    ("fe80::1", "link-local"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("ff02::1", "multicast"),
    ("0.0.0.0", "unspecified"),
    ("::", "unspecified"),
    ("240.0.0.1", "reserved"),
    ("100.64.0.1", "not a globally routable"),
    ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:10.0.0.1", "private"),
    ("::ffff:169.254.169.254", "link-local"),
    ("2002:7f00:1::", "loopback"),  # 6to4 wrapping 127.0.0.1
    ("64:ff9b::a00:1", "private"),  # NAT64 wrapping 10.0.0.1
]

PUBLIC = ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2001:4860:4860::8888", "::ffff:8.8.8.8"]


@pytest.mark.parametrize(("address", "reason"), BLOCKED)
def test_blocked_reason_names_why_an_address_is_refused(address: str, reason: str) -> None:
    found = blocked_reason(ipaddress.ip_address(address))
    assert found is not None
    assert reason in found


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_allowed(address: str) -> None:
    assert blocked_reason(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    ("address", "inner"),
    [
        ("::ffff:127.0.0.1", "127.0.0.1"),
        ("2002:0a00:0001::", "10.0.0.1"),
        ("64:ff9b::0808:0808", "8.8.8.8"),
        ("2001:db8::1", None),
        ("10.0.0.1", None),
    ],
)
def test_embedded_ipv4_unwraps_forms_that_route_to_ipv4(address: str, inner: str | None) -> None:
    found = embedded_ipv4(ipaddress.ip_address(address))
    assert (str(found) if found else None) == inner


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("10.0.0.1", "10.0.0.1"),
        ("[::1]", "::1"),
        ("fe80::1%eth0", "fe80::1"),
        ("example.com", None),
    ],
)
def test_parse_ip_recognizes_literals_only(host: str, expected: str | None) -> None:
    found = parse_ip(host)
    assert (str(found) if found else None) == expected


def _resolver(table: dict[str, list[str]]):
    calls: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        calls.append(host)
        if host not in table:
            raise OSError("Name or service not known")
        return table[host]

    return resolve, calls


async def test_one_private_address_among_public_ones_refuses_the_host() -> None:
    resolve, _ = _resolver({"mixed.example": ["93.184.216.34", "10.0.0.7"]})
    with pytest.raises(BlockedAddressError) as info:
        await resolve_allowed("mixed.example", 443, allow_private=False, resolver=resolve)
    message = str(info.value)
    assert "mixed.example" in message and "10.0.0.7" in message and "private" in message
    assert "allow_private_network" in message


async def test_public_host_resolves_to_all_its_addresses_in_order() -> None:
    resolve, _ = _resolver({"api.example": ["93.184.216.34", "2606:2800:220:1::1"]})
    found = await resolve_allowed("api.example", 443, allow_private=False, resolver=resolve)
    assert [str(a) for a in found] == ["93.184.216.34", "2606:2800:220:1::1"]


async def test_allow_private_skips_the_check() -> None:
    resolve, _ = _resolver({"intranet.example": ["10.0.0.7"]})
    found = await resolve_allowed("intranet.example", 80, allow_private=True, resolver=resolve)
    assert [str(a) for a in found] == ["10.0.0.7"]


async def test_ip_literal_is_checked_without_a_lookup() -> None:
    resolve, calls = _resolver({})
    with pytest.raises(BlockedAddressError, match=r"127\.0\.0\.1 is a loopback address"):
        await resolve_allowed("127.0.0.1", 80, allow_private=False, resolver=resolve)
    with pytest.raises(BlockedAddressError, match="loopback"):
        await resolve_allowed("[::ffff:127.0.0.1]", 80, allow_private=False, resolver=resolve)
    assert calls == []


async def test_unresolvable_host_is_a_tool_error_naming_it() -> None:
    resolve, _ = _resolver({})
    with pytest.raises(ToolError, match=r"could not resolve host 'nowhere\.example'"):
        await resolve_allowed("nowhere.example", 80, allow_private=False, resolver=resolve)


async def test_localhost_is_refused_through_the_system_resolver() -> None:
    with pytest.raises(BlockedAddressError, match=r"localhost resolves to .* loopback"):
        await resolve_allowed("localhost", 80, allow_private=False)


async def test_system_resolver_returns_each_address_once() -> None:
    found = await system_resolver("localhost", 80)
    assert found
    assert len(found) == len(set(found))
    assert all(ipaddress.ip_address(a).is_loopback for a in found)
