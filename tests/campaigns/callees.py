"""Simulated callees for the campaign runner's tests: a dial records a call as the
dial service would and, unless held, ends it at once with the number's next
scripted outcome (default: answered and completed). A held call rings until the
test answers it (``answer_all``) and ends it (``hang_up_all``)."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Engine, update
from sqlmodel import Session

from agentplatform.campaigns.store import DialTicket
from agentplatform.storage.models import Call, utcnow


class Refused(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason, self.message = reason, message


class Callees:
    def __init__(self, engine: Engine, script: dict[str, list[str]] | None = None, *,
                 hold: bool = False, refuse: dict[str, str] | None = None,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.engine = engine
        self.clock = clock
        self.script = {k: list(v) for k, v in (script or {}).items()}
        self.hold = hold
        self.refuse = dict(refuse or {})
        self.dialed: list[str] = []
        self.tickets: list[DialTicket] = []
        self.open: dict[str, str] = {}  # call id -> outcome when released

    async def __call__(self, ticket: DialTicket) -> str:
        if ticket.to_number in self.refuse:
            raise Refused(self.refuse[ticket.to_number], "refused by the simulated platform")
        self.dialed.append(ticket.to_number)
        self.tickets.append(ticket)
        outcomes = self.script.get(ticket.to_number) or []
        outcome = outcomes.pop(0) if outcomes else "completed"
        call_id = uuid.uuid4().hex
        await asyncio.to_thread(self._record, call_id, ticket, None if self.hold else outcome)
        if self.hold:
            self.open[call_id] = outcome
        return call_id

    def times_dialed(self) -> Counter[str]:
        return Counter(self.dialed)

    async def hang_up_all(self, at: datetime | None = None) -> None:
        held, self.open = self.open, {}
        for call_id, outcome in held.items():
            await asyncio.to_thread(self._end, call_id, outcome, at or self.clock())

    def _record(self, call_id: str, ticket: DialTicket, outcome: str | None) -> None:
        now = self.clock()
        with Session(self.engine) as session:
            session.add(Call(id=call_id, carrier_call_id="", carrier=ticket.carrier,
                             agent=ticket.agent, model="openai/gpt-realtime",
                             requested_model="openai/gpt-realtime",
                             from_number=ticket.from_number, to_number=ticket.to_number,
                             started_at=now, ended_at=now if outcome else None,
                             end_reason=outcome, status="ended" if outcome else "ringing"))
            session.commit()

    async def answer_all(self) -> None:
        """The held calls are answered: a conversation with the agent's model."""
        for call_id in self.open:
            await asyncio.to_thread(self._update, call_id, status="in_progress",
                                    model_connected_at=self.clock())

    def _end(self, call_id: str, outcome: str, at: datetime) -> None:
        self._update(call_id, ended_at=at, end_reason=outcome, status="ended")

    def _update(self, call_id: str, **values: object) -> None:
        with Session(self.engine) as session:
            session.execute(update(Call).where(Call.id == call_id).values(  # type: ignore[arg-type]
                **values))
            session.commit()
