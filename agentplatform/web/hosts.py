"""Which names this server answers to, and which pages may write to it.

DNS rebinding turns a name the attacker owns (``evil.example``) into 127.0.0.1 after
the browser has loaded the attacker's page; from then on the page talks to this
server from "this machine", with ``Host: evil.example``. A server that checks only
the socket address gives it everything. So every request's ``Host`` must be a name
we chose to answer to:

* loopback names (``localhost``, ``127.0.0.1``, ``[::1]``), on any port;
* the host of ``PUBLIC_URL`` (Twilio and remote browsers reach us by it);
* the bound address when it is a specific one (``HOST=192.0.2.5``);
* each entry of ``ALLOWED_HOSTS`` (comma-separated; ``*.example.com`` matches any
  subdomain of ``example.com``, not ``example.com`` itself).

A write from a browser (and any WebSocket opened by one) also carries ``Origin``: it
passes when it is this very origin (same scheme-less ``host:port`` as ``Host``), or a
non-loopback allowed name. Another program's page on ``localhost:3000`` is therefore
refused; so is ``Origin: null``.

Pure functions over strings, so the rules are tested without a server.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
# Any of these means a proxy relayed the request: the socket address is the proxy's.
FORWARDING_HEADERS = frozenset({
    "forwarded", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto",
    "x-forwarded-port", "x-forwarded-server", "x-forwarded-prefix", "x-real-ip",
    "x-client-ip", "x-original-forwarded-for", "true-client-ip", "cf-connecting-ip",
    "fastly-client-ip", "x-cluster-client-ip", "via",
})
_WILDCARD_ADDRESSES = frozenset({"", "0.0.0.0", "::", "*"})


class BadHost(ValueError):
    """A ``Host`` or ``Origin`` value that is malformed or not one we answer to."""


def split_host(value: str) -> tuple[str, str]:
    """``(name, port)`` of a ``Host`` value, the name lower-cased without a trailing dot;
    raise ``BadHost`` for anything that is not a host name with an optional port."""
    text = value.strip().lower()
    if not text or any(c in text for c in "/\\@?#% \t"):
        raise BadHost(f"malformed host {value!r}")
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise BadHost(f"malformed host {value!r}")
        name, rest = text[1:end], text[end + 1:]
        if rest and not rest.startswith(":"):
            raise BadHost(f"malformed host {value!r}")
        port = rest[1:]
    elif text.count(":") > 1:
        raise BadHost(f"malformed host {value!r} (an IPv6 address needs brackets)")
    else:
        name, _, port = text.partition(":")
    if port and not (port.isdigit() and len(port) <= 5):
        raise BadHost(f"malformed port in host {value!r}")
    name = name.rstrip(".")
    if not name:
        raise BadHost(f"malformed host {value!r}")
    return name, port


def _entry(value: str) -> str:
    """One allow-list entry as a bare lower-case name (a URL or a port is tolerated)."""
    text = value.strip()
    if "://" in text:
        text = urlsplit(text).netloc
    if text.startswith("*."):
        return "*." + split_host(text[2:])[0]
    return split_host(text)[0]


@dataclass(frozen=True, slots=True)
class HostPolicy:
    """The names this server answers to (see the module docstring)."""

    names: frozenset[str]
    suffixes: tuple[str, ...] = ()

    @classmethod
    def build(cls, *, public_url: str = "", allowed_hosts: str = "",
              bind_host: str = "") -> HostPolicy:
        """From the settings; raise ``ValueError`` naming a malformed entry."""
        entries: list[str] = []
        if public_url:
            entries.append(public_url)
        if bind_host.strip() not in _WILDCARD_ADDRESSES:
            entries.append(f"[{bind_host}]" if ":" in bind_host else bind_host)
        entries.extend(part for part in allowed_hosts.split(",") if part.strip())
        names, suffixes = set(LOOPBACK_NAMES), []
        for raw in entries:
            try:
                entry = _entry(raw)
            except BadHost as exc:
                raise ValueError(f"ALLOWED_HOSTS / PUBLIC_URL / HOST: {exc}") from None
            if entry.startswith("*."):
                suffixes.append(entry[1:])  # ".example.com"
            else:
                names.add(entry)
        return cls(frozenset(names), tuple(suffixes))

    def allows(self, name: str) -> bool:
        return name in self.names or any(name.endswith(s) for s in self.suffixes)

    def check_host(self, value: str | None) -> str:
        """The name in a ``Host`` value, or ``BadHost`` saying why it is refused."""
        if not value:
            raise BadHost("the request has no Host header")
        name, _ = split_host(value)
        if not self.allows(name):
            raise BadHost(f"this server does not answer to the name {name!r}; "
                          "add it to ALLOWED_HOSTS if it should")
        return name

    def check_origin(self, origin: str, host: str) -> None:
        """Raise ``BadHost`` unless ``origin`` is this origin or an allowed remote name."""
        if origin == "null":
            raise BadHost("a page with an opaque origin may not write here")
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise BadHost(f"malformed Origin {origin!r}")
        name, port = split_host(parts.netloc)
        if (name, port) == split_host(host):
            return
        if name in LOOPBACK_NAMES or not self.allows(name):
            raise BadHost(f"a page from {parts.netloc!r} may not write here")

    def describe(self) -> str:
        return ", ".join(sorted(self.names) + [f"*{s}" for s in self.suffixes])


def is_loopback_name(name: str) -> bool:
    return name in LOOPBACK_NAMES


def forwarding_headers(headers: Iterable[str]) -> list[str]:
    """The proxy headers among ``headers`` (lower-case names)."""
    return sorted(h for h in headers if h in FORWARDING_HEADERS)
