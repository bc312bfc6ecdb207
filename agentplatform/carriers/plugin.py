"""What a carrier brings to the server, and what the server lends it.

A carrier is a plug-in, like a model provider: the application knows carriers only
through this interface and the registry (``registry.py``), so adding one is a new
folder and one registry line. A carrier turns its wire protocol into ``CallAudio``
and hands each authenticated call to ``CarrierContext.handle_call``; it never
imports the application, the bridge or another carrier.

What a carrier declares:

* ``routes()`` — its HTTP/WebSocket endpoints (or ``None``: a SIP trunk has none);
* ``public_paths`` — path prefixes the access middleware lets through with no admin
  session, because the carrier checks its own signatures and tokens there;
* ``server_paths`` — the subset called by the carrier's servers, not by browsers, so
  a browser's ``Origin`` rule does not apply there;
* ``start()`` / ``stop()`` — listeners it owns (a UDP socket), run by the lifespan:
  started once the platform is up, stopped after live calls have been ended (so a
  hang-up can still reach the far end).
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Protocol

from agentplatform.carriers.base import CallAudio
from agentplatform.carriers.dialing import OutboundRequest
from agentplatform.config import Settings
from agentplatform.single_use import SingleUseStore

if TYPE_CHECKING:
    from fastapi import APIRouter


class PlatformServices(Protocol):
    """The server's side of the seam (the application's ``Platform`` implements it)."""

    async def lookup_agent(self, number: str) -> str | None: ...

    async def admit_call(self, carrier: str, carrier_call_id: str, agent: str,
                         from_number: str, to_number: str) -> str | None: ...

    async def handle_call(self, audio: CallAudio) -> None: ...

    def call_finished(self, carrier_call_id: str) -> None: ...

    def count_malformed(self, carrier: str, kind: str, n: int) -> None: ...

    def dial_ended(self, request: OutboundRequest, reason: str, detail: str) -> None: ...

    def dial_progress(self, request: OutboundRequest, status: str,
                      carrier_call_id: str) -> None: ...


@dataclass(frozen=True, slots=True)
class CarrierContext:
    """Everything a carrier may ask of the server, bound to that carrier's name.

    ``services`` is called on each use: the routes exist before the lifespan has
    built the platform, and calls only arrive after it has.
    """

    carrier: str
    settings: Settings
    single_use: SingleUseStore
    services: Callable[[], PlatformServices]

    async def lookup_agent(self, number: str) -> str | None:
        """The agent answering the dialed ``number``, or ``None``; edited agent files
        are picked up (read off the event loop)."""
        return await self.services().lookup_agent(number)

    async def admit(self, carrier_call_id: str, agent: str, from_number: str,
                    to_number: str) -> str | None:
        """Before anything is set up for a call (a webhook, an INVITE): ``None`` to
        take it, else the sentence to refuse it with. A refusal is recorded under this
        carrier's name and costs nothing."""
        return await self.services().admit_call(self.carrier, carrier_call_id, agent,
                                                from_number, to_number)

    def handle_call(self, audio: CallAudio) -> Awaitable[None]:
        """Run one authenticated call to its end (checks again, model, bridge, record).
        ``audio.info.carrier`` must be this carrier's name: the record and the metrics
        say which carrier took the call, so a stream claiming another is refused."""
        if audio.info.carrier != self.carrier:
            raise ValueError(f"the {self.carrier} carrier handed over a call whose CallInfo "
                             f"says carrier {audio.info.carrier!r}")
        return self.services().handle_call(audio)

    def call_finished(self, carrier_call_id: str) -> None:
        """The carrier says the call is over (a final status, a CANCEL): closes a record
        its stream never closed and frees a slot reserved for a stream that never came."""
        self.services().call_finished(carrier_call_id)

    def dial_ended(self, request: OutboundRequest, reason: str, detail: str = "") -> None:
        """An outbound call that never reached a conversation: ``reason`` is an
        end-reason value (``busy``, ``no_answer``, ``failed``; ``server_shutdown`` when the
        server stopped while it rang, so a campaign tries it again); closes the record the
        platform opened when it queued the call, and frees its concurrency slot. Called
        at most once per request. For a call handed over with ``handle_call``, only
        with ``completed`` (the carrier's final word that the call is over), which
        closes the record only if no stream did."""
        self.services().dial_ended(request, reason, detail)

    def dial_progress(self, request: OutboundRequest, status: str = "ringing",
                      carrier_call_id: str = "") -> None:
        """An outbound call moved on before anyone answered: ``status`` is ``ringing``
        (the attempt is under way: Twilio accepted it, the INVITE went out), and
        ``carrier_call_id`` the carrier's id once known (Twilio CallSid, SIP Call-ID),
        recorded on the call so carrier-side events can find it. May be called more
        than once; the latest non-empty id wins."""
        self.services().dial_progress(request, status, carrier_call_id)

    def count_malformed(self, kind: str, n: int = 1) -> None:
        """Messages dropped as malformed outside any call (a bad datagram), by kind,
        for ``/metrics``; a call's own counts go in ``CallAudio.malformed_counts``."""
        self.services().count_malformed(self.carrier, kind, n)


class Carrier(abc.ABC):
    """One carrier plug-in; built once per application with its context."""

    name: ClassVar[str]
    # Whether ``place_call`` can place outbound calls (``carriers/dialing.py``).
    can_dial: ClassVar[bool] = False
    public_paths: ClassVar[tuple[str, ...]] = ()
    server_paths: ClassVar[tuple[str, ...]] = ()

    def __init__(self, context: CarrierContext) -> None:
        self.context = context

    @classmethod
    def enabled(cls, settings: Settings) -> bool:
        """Whether the settings turn this carrier on (e.g. ``SIP_LISTEN`` is set)."""
        return True

    def routes(self) -> APIRouter | None:
        """Endpoints to mount on the application, or ``None``."""
        return None

    def dial_problem(self) -> str | None:
        """Why this carrier cannot place a call with the present settings (missing
        credentials, no outbound trunk), or ``None`` when it can."""
        return None if self.can_dial else f"the {self.name} carrier cannot place calls"

    async def place_call(self, request: OutboundRequest) -> None:
        """Start dialing ``request``; return once the attempt is under way. Raises
        ``CarrierError`` when it cannot start. See ``carriers/dialing.py`` for what
        the carrier reports afterwards."""
        from agentplatform.errors import CarrierError

        raise CarrierError(self.dial_problem() or f"the {self.name} carrier cannot dial")

    async def start(self) -> None:
        """Open listeners; called in the lifespan once calls can be handled."""

    async def stop(self) -> None:
        """Close listeners; called at shutdown after live calls were ended."""
