"""Slow down password guessing: a growing wait per client address after failed sign-ins.

The first ``free`` failures from an address cost nothing. After that, the next attempt
from it is accepted only ``base * 2**k`` seconds after the last failure (k = failures
beyond the free ones, capped at ``cap`` seconds); earlier attempts get 429 with
``Retry-After`` and are not checked at all, not even a right password. A success
forgets the address; so does ``forget_after`` seconds of quiet.

The address is the socket's (a forwarding header is never believed). An IPv6 client is
counted by its /64, since one machine commonly holds a whole /64. Behind a proxy every
client shares the proxy's address, so a guesser also slows the real admin down — to
at most one try per ``cap`` seconds, never locked out. Counts are per process: N
processes give a guesser N times the tries, still a handful per minute.
"""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class _Record:
    failures: int
    last_failure: float


def client_key(address: str) -> str:
    """The unit of counting: an IPv4 address, an IPv6 /64, or the text as given."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class LoginThrottle:
    def __init__(self, *, free: int = 5, base: float = 1.0, cap: float = 60.0,
                 forget_after: float = 900.0, max_clients: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._free, self._base, self._cap = free, base, cap
        self._forget_after, self._max = forget_after, max_clients
        self._clock = clock
        self._records: OrderedDict[str, _Record] = OrderedDict()

    def retry_after(self, address: str) -> float:
        """Seconds until ``address`` may try again; 0 when it may now."""
        record = self._records.get(client_key(address))
        if record is None or record.failures < self._free:
            return 0.0
        now = self._clock()
        if now - record.last_failure >= self._forget_after:
            del self._records[client_key(address)]
            return 0.0
        wait = min(self._cap, self._base * 2 ** min(record.failures - self._free, 30))
        return max(0.0, record.last_failure + wait - now)

    def failed(self, address: str) -> None:
        key = client_key(address)
        record = self._records.pop(key, None) or _Record(0, 0.0)
        record.failures += 1
        record.last_failure = self._clock()
        self._records[key] = record  # newest last
        while len(self._records) > self._max:
            self._records.popitem(last=False)  # the address quiet the longest

    def succeeded(self, address: str) -> None:
        self._records.pop(client_key(address), None)
