"""One Twilio Media Stream, as ``CallAudio``: owns the WebSocket, nothing else.

Life of a stream: ``start()`` reads ``connected`` and ``start``, checks the
stream token against the CallSid and spends it (closing 1008 before anything else
happens if it is bad or already used, so no model session is ever opened for an
unauthenticated or replayed stream),
then ``events()`` turns frames into carrier events until ``stop`` or the socket
closes. On a socket that can hand each frame over in its callback (the media
listener's ``MediaSocket.dispatch``) the bridge may take the events that way instead
(``deliver_to``): the same parsing and checks run inside the socket's callback and each
event goes straight to the bridge, with no task woken per frame. A malformed frame is
counted by kind and skipped; only the socket ending ends the stream. Sends never raise: a closed socket is logged once and the
stream is marked closed, since the bridge learns of the end from ``events()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable
from enum import StrEnum
from typing import Any

from starlette.websockets import WebSocket

from agentplatform.carriers.base import (
    CallAudio, CallInfo, CarrierEvent, Dtmf, InboundAudio, MarkPlayed, StreamStopped,
)
from agentplatform.carriers.twilio.control import TwilioCallControl
from agentplatform.carriers.twilio.media import (
    Connected, DtmfDigit, Inbound, MalformedKind, MalformedMessage, Mark, Media, Start, Stop,
    clear_message, mark_message, media_message, parse_message,
)
from agentplatform.carriers.tokens import StreamTokens
from agentplatform.carriers.twilio.outbound import (
    CALL_ID_PARAMETER, request_from_parameters, stream_twiml,
)
from agentplatform.errors import CarrierError, StreamAuthError

log = logging.getLogger(__name__)

POLICY_VIOLATION = 1008  # WebSocket close code for "you may not"
NORMAL_CLOSURE = 1000
TOKEN_PARAMETER = "token"
# Marks a stream Twilio opened after our ``<Play digits>``: it continues a live call.
RESUME_PARAMETER = "resume"
RESUME_TIMEOUT_SECONDS = 30.0  # tones, then Twilio opening the new stream
TWILIO_DIGITS = re.compile(r"[0-9*#w]{1,64}")
_INBOUND_TRACKS = frozenset({"inbound", "inbound_track"})


class StreamState(StrEnum):
    NEW = "new"
    STARTED = "started"
    CLOSED = "closed"


class _SocketEnded(Exception):
    """The peer closed the socket (internal signal, never escapes this module)."""


class TwilioCallAudio(CallAudio):
    """A Twilio Media Stream over a Starlette WebSocket."""

    carrier = "twilio"  # CallInfo.carrier: a subclass speaking the same protocol names itself

    def __init__(
        self, websocket: WebSocket, *, tokens: StreamTokens,
        control: TwilioCallControl | None = None, start_timeout: float = 10.0,
        stream_url: str = "", resume_timeout: float = RESUME_TIMEOUT_SECONDS,
    ) -> None:
        self._ws = websocket
        # Where Twilio reconnects the stream after ``<Play digits>`` (``send_dtmf``).
        self._stream_url = stream_url
        self._resume_timeout = resume_timeout
        self._parameters: dict[str, str] = {}  # the start's parameters, minus the token
        self._resume: asyncio.Future[TwilioCallAudio] | None = None
        self._outstanding_marks: dict[str, None] = {}  # sent, not yet echoed
        self._finished = asyncio.Event()
        self.resumes = False  # this socket continues a live call (after its DTMF)
        self._tokens = tokens
        self._control = control
        self._start_timeout = start_timeout
        self.state = StreamState.NEW
        self.info = CallInfo(call_id="", stream_id="", carrier=self.carrier)
        self.account_sid = ""
        self.malformed_counts: Counter[MalformedKind] = Counter()
        self._last_seq = 0  # the newest sequenceNumber accepted
        # Events from outside the socket (the AMD verdict, an HTTP callback), handed
        # out before the next frame: Twilio sends one every 20 ms.
        self._delivered: deque[CarrierEvent] = deque()
        # Set by ``deliver_to``: every event goes to it, in the socket's callback.
        self._sink: Callable[[CarrierEvent], None] | None = None
        self._send_failed = False
        self._handlers: dict[type, Callable[[Any], CarrierEvent | None]] = {
            Media: self._on_media,
            Mark: self._on_mark,
            DtmfDigit: self._on_dtmf,
            Stop: self._on_stop,
            Connected: self._on_unexpected,
            Start: self._on_unexpected,
        }

    # ------------------------------------------------------------ start

    @property
    def malformed_count(self) -> int:
        return sum(self.malformed_counts.values())

    def _expect(self, state: StreamState) -> None:
        if self.state is not state:
            raise CarrierError(f"stream expected state {state}, got {self.state}")

    async def accept_and_start(self) -> CallInfo:
        """Accept the WebSocket upgrade, then ``start()``."""
        await self._ws.accept()
        return await self.start()

    async def start(self) -> CallInfo:
        """Wait for Twilio's ``start``, check the token, and return who called.

        Raises ``StreamAuthError`` (socket closed 1008) for a missing or bad token,
        ``CarrierError`` if the socket ends or stalls before ``start``."""
        self._expect(StreamState.NEW)
        try:
            async with asyncio.timeout(self._start_timeout):
                start = await self._read_until_start()
        except (TimeoutError, _SocketEnded) as exc:
            await self._close(POLICY_VIOLATION, "no start")
            raise CarrierError("media stream ended or stalled before start") from exc
        params = dict(start.custom_parameters)
        token = params.pop(TOKEN_PARAMETER, "")
        # A call we placed: its token was minted before Twilio named the call, for the
        # platform call id the stream carries (``outbound.py``).
        bound_to = params.get(CALL_ID_PARAMETER) or start.call_sid
        try:
            if not token:
                raise StreamAuthError("media stream carries no token")
            # Verified and spent in one step: a replayed token, on any process, stops here.
            agent = (await self._tokens.redeem(token, bound_to)).agent
        except StreamAuthError as exc:
            log.warning("rejecting media stream for call %s: %s", start.call_sid, exc)
            await self._close(POLICY_VIOLATION, "stream token rejected")
            raise
        if params.get("agent", agent) != agent:
            log.warning("call %s: agent parameter %r differs from the token's %r; using the token's",
                        start.call_sid, params.get("agent"), agent)
        self.account_sid = start.account_sid
        self.resumes = params.pop(RESUME_PARAMETER, "") == "1"
        self._parameters = dict(params)
        outbound = request_from_parameters(params, agent)
        self.info = CallInfo(
            call_id=start.call_sid, stream_id=start.stream_sid, carrier=self.carrier,
            from_number=params.get("from", ""), to_number=params.get("to", ""),
            agent=agent, parameters=outbound.params if outbound is not None else params,
            outbound=outbound,
        )
        self.state = StreamState.STARTED
        return self.info

    async def _read_until_start(self) -> Start:
        while True:
            msg = await self._read()
            if isinstance(msg, Start):
                self._last_seq = msg.sequence_number
                return msg
            if msg is not None and not isinstance(msg, Connected):
                self._count(MalformedMessage(MalformedKind.UNEXPECTED,
                                             f"{type(msg).__name__} before start"))

    # ------------------------------------------------------------ receive

    async def _read(self) -> Inbound | None:
        """The next parsed frame; ``None`` for a skipped malformed one."""
        try:
            frame = await self._ws.receive()
        except Exception as exc:  # starlette raises RuntimeError once disconnected
            raise _SocketEnded() from exc
        text = frame.get("text")
        if text is None:
            if frame["type"] == "websocket.disconnect":
                raise _SocketEnded()
            self._count(MalformedMessage(MalformedKind.BINARY, "binary frame"))
            return None
        try:
            return parse_message(text)
        except MalformedMessage as exc:
            self._count(exc)
            return None

    def _count(self, exc: MalformedMessage) -> None:
        self.malformed_counts[exc.kind] += 1
        log.debug("call %s: skipped malformed frame: %s", self.info.call_id, exc)

    async def events(self) -> AsyncIterator[CarrierEvent]:
        """Inbound audio, DTMF and mark echoes, ending with one ``StreamStopped``;
        after ``deliver_to``, nothing (they go to its sink), ending with the stream."""
        if self._sink is not None:
            await self._dispatch_frames()
            return
        self._expect(StreamState.STARTED)
        while True:
            while self._delivered:
                yield self._delivered.popleft()
            socket_ended = False
            try:
                msg = await self._read()
            except _SocketEnded:
                socket_ended, msg = True, None
            if type(msg) is Media:  # fifty a second: the checks of ``_in_order``, inline
                if msg.stream_sid != self.info.stream_id:
                    self._count(MalformedMessage(MalformedKind.WRONG_STREAM,
                                                 f"frame for stream {msg.stream_sid[:40]!r}"))
                    continue
                seq = msg.sequence_number
                if seq:  # 0: an unnumbered frame, not checked
                    if seq <= self._last_seq:
                        self._count(MalformedMessage(MalformedKind.OUT_OF_ORDER,
                                                     f"sequenceNumber {seq} after {self._last_seq}"))
                        continue
                    self._last_seq = seq
                if msg.track in _INBOUND_TRACKS:
                    yield InboundAudio(msg.payload, msg.timestamp, time.monotonic())
                continue
            if (socket_ended or isinstance(msg, Stop)) and self._resume is not None:
                # Our own new TwiML (``send_dtmf``) stopped this socket: the call goes on
                # on the next one. Marks sent here will never come back: played out.
                if await self._take_resumed_socket():
                    for name in list(self._outstanding_marks):
                        yield MarkPlayed(name=name)
                    self._outstanding_marks.clear()
                    continue
                self.state = StreamState.CLOSED
                yield StreamStopped(reason="carrier_error",
                                    detail="the stream did not come back after sending DTMF")
                return
            if socket_ended:
                self.state = StreamState.CLOSED
                yield StreamStopped()
                return
            if msg is None or not self._in_order(msg):
                continue
            event = self._handlers[type(msg)](msg)
            if event is None:
                continue
            yield event
            if isinstance(event, StreamStopped):
                return

    def _in_order(self, msg: Inbound) -> bool:
        """This stream's, and newer than the last: Twilio numbers every frame of a
        stream from 1 over one ordered socket, so a number not after the last is a
        repeat or a replay, and its audio must not reach the model twice."""
        sid = getattr(msg, "stream_sid", self.info.stream_id)
        if sid != self.info.stream_id:
            self._count(MalformedMessage(MalformedKind.WRONG_STREAM, f"frame for stream {sid[:40]!r}"))
            return False
        seq = getattr(msg, "sequence_number", 0)
        if seq:  # 0: an unnumbered frame, not checked
            if seq <= self._last_seq:
                self._count(MalformedMessage(MalformedKind.OUT_OF_ORDER,
                                             f"sequenceNumber {seq} after {self._last_seq}"))
                return False
            self._last_seq = seq
        return True

    def deliver(self, event: CarrierEvent) -> None:
        """An event about this call that came another way (``outbound.LiveStreams``)."""
        if self._sink is not None:
            self._sink(event)
        else:
            self._delivered.append(event)

    # ------------------------------------------------------------ receive, in the callback

    def deliver_to(self, sink: Callable[[CarrierEvent], None]) -> bool:
        """Events to ``sink`` as each frame arrives, when the socket can hand frames
        over in its callback (``MediaSocket.dispatch``); ``CallAudio.deliver_to``.
        Events delivered from outside (``deliver``) go to it as they come."""
        if self.state is not StreamState.STARTED or self._sink is not None \
                or getattr(self._ws, "dispatch", None) is None:
            return False
        self._sink = sink
        while self._delivered:
            sink(self._delivered.popleft())
        return True

    def hold_delivery(self, hold: bool) -> None:
        hold_reading = getattr(self._ws, "hold_reading", None)
        if hold_reading is not None:
            hold_reading(hold)

    async def _dispatch_frames(self) -> None:
        """``events()`` on the callback path: frames go to the sink in the socket's
        callback (``_on_frame``) until ``stop`` or the socket's end, which are handled
        here as ``events()`` handles them, the ``StreamStopped`` going to the sink last."""
        sink = self._sink
        assert sink is not None
        while True:
            dispatch = getattr(self._ws, "dispatch", None)
            try:
                stopped = await (dispatch(self._on_frame) if dispatch is not None
                                 else self._read_into(self._on_frame))
            except _SocketEnded:
                stopped = False
            if self._resume is not None:  # our DTMF's TwiML ended this socket
                if await self._take_resumed_socket():
                    for name in list(self._outstanding_marks):
                        sink(MarkPlayed(name=name))
                    self._outstanding_marks.clear()
                    continue
                self.state = StreamState.CLOSED
                sink(StreamStopped(reason="carrier_error",
                                   detail="the stream did not come back after sending DTMF"))
                return
            if not stopped:  # the socket ended
                self.state = StreamState.CLOSED
            sink(StreamStopped())
            return

    async def _read_into(self, handler: Callable[[str | bytes], bool]) -> bool:
        """``dispatch`` for a socket without it (a resumed stream on the main port)."""
        while True:
            try:
                frame = await self._ws.receive()
            except Exception as exc:  # starlette raises RuntimeError once disconnected
                raise _SocketEnded() from exc
            if frame["type"] == "websocket.disconnect":
                return False
            text = frame.get("text")
            if handler(text if text is not None else frame.get("bytes") or b""):
                return True

    def _on_frame(self, data: str | bytes) -> bool:
        """One frame, in the socket's callback: its event goes to the sink now. True
        for a ``stop`` (of this stream, or of any while our DTMF's TwiML runs), which
        ``_dispatch_frames`` takes from there."""
        if type(data) is not str:
            self._count(MalformedMessage(MalformedKind.BINARY, "binary frame"))
            return False
        try:
            msg = parse_message(data)
        except MalformedMessage as exc:
            self._count(exc)
            return False
        kind = type(msg)
        if kind is Media:  # fifty a second: the checks of ``_in_order``, inline
            if msg.stream_sid != self.info.stream_id:
                self._count(MalformedMessage(MalformedKind.WRONG_STREAM,
                                             f"frame for stream {msg.stream_sid[:40]!r}"))
                return False
            seq = msg.sequence_number
            if seq:  # 0: an unnumbered frame, not checked
                if seq <= self._last_seq:
                    self._count(MalformedMessage(MalformedKind.OUT_OF_ORDER,
                                                 f"sequenceNumber {seq} after {self._last_seq}"))
                    return False
                self._last_seq = seq
            if msg.track in _INBOUND_TRACKS:
                self._sink(InboundAudio(msg.payload, msg.timestamp, time.monotonic()))  # type: ignore[misc]
            return False
        if kind is Stop and self._resume is not None:
            return True
        if not self._in_order(msg):
            return False
        if kind is Stop:
            return True
        event = self._handlers[kind](msg)
        if event is not None:
            self._sink(event)  # type: ignore[misc]
        return False

    def _on_media(self, msg: Media) -> CarrierEvent | None:
        if msg.track not in _INBOUND_TRACKS:
            return None
        return InboundAudio(audio=msg.payload, timestamp_ms=msg.timestamp, received_at=time.monotonic())

    def _on_mark(self, msg: Mark) -> CarrierEvent:
        self._outstanding_marks.pop(msg.name, None)
        return MarkPlayed(name=msg.name)

    def _on_dtmf(self, msg: DtmfDigit) -> CarrierEvent:
        return Dtmf(digit=msg.digit)

    def _on_stop(self, msg: Stop) -> CarrierEvent:
        return StreamStopped()

    def _on_unexpected(self, msg: Inbound) -> None:
        self._count(MalformedMessage(MalformedKind.UNEXPECTED, f"{type(msg).__name__} after start"))

    # ------------------------------------------------------------ send

    async def _send(self, text: str) -> None:
        if self.state is not StreamState.STARTED or self._send_failed:
            if self.state is StreamState.NEW:
                raise CarrierError("stream expected state started, got new")
            return
        try:
            await self._ws.send_text(text)
        except Exception as exc:  # the socket is gone; the receive side reports the end
            self._send_failed = True
            log.info("call %s: media socket closed while sending (%r)", self.info.call_id, exc)

    async def send_audio(self, ulaw: bytes) -> None:
        await self._send(media_message(self.info.stream_id, ulaw))

    async def send_mark(self, name: str) -> None:
        self._outstanding_marks[name] = None
        await self._send(mark_message(self.info.stream_id, name))

    async def send_audio_marked(self, ulaw: bytes, name: str) -> None:
        """A media message and its mark, as two frames (the hot path: one state check)."""
        if self.state is not StreamState.STARTED or self._send_failed:
            await self.send_audio(ulaw)  # refused or dropped, as each would be
            await self.send_mark(name)
            return
        self._outstanding_marks[name] = None
        stream_id = self.info.stream_id
        ws = self._ws
        try:
            send_texts = getattr(ws, "send_texts", None)
            if send_texts is not None:  # the media listener's: both frames in one write
                await send_texts(media_message(stream_id, ulaw), mark_message(stream_id, name))
            else:
                await ws.send_text(media_message(stream_id, ulaw))
                await ws.send_text(mark_message(stream_id, name))
        except Exception as exc:  # the socket is gone; the receive side reports the end
            self._send_failed = True
            log.info("call %s: media socket closed while sending (%r)", self.info.call_id, exc)

    async def clear(self) -> None:
        await self._send(clear_message(self.info.stream_id))

    # ------------------------------------------------------------ call control

    async def hang_up(self, say: str | None = None) -> None:
        """End the call: by REST when we can, and by closing the stream in any case
        (the TwiML after ``</Connect>`` is ``<Hangup/>``)."""
        if self._control is None:
            log.warning("call %s: no Twilio credentials; ending the call by closing the stream",
                        self.info.call_id)
        elif self.info.call_id:
            try:
                await self._control.hang_up(self.info.call_id, say=say)
            except CarrierError as exc:
                log.warning("call %s: REST hang-up failed (%s); closing the stream", self.info.call_id, exc)
        await self.close()

    async def transfer(self, number: str) -> None:
        """Dial ``number`` in place of the stream (Twilio then sends ``stop``).

        Without credentials, or if Twilio refuses, raise ``CarrierError`` and leave the
        stream open: the caller stays with the agent, which tells them (the bridge)."""
        if self._control is None:
            log.warning("call %s: cannot transfer without Twilio credentials",
                        self.info.call_id)
            raise CarrierError("cannot transfer: no Twilio credentials (TWILIO_ACCOUNT_SID, "
                               "TWILIO_AUTH_TOKEN)")
        try:
            await self._control.transfer(self.info.call_id, number)
        except CarrierError as exc:
            log.warning("call %s: transfer failed (%s); the caller stays", self.info.call_id, exc)
            raise

    async def send_dtmf(self, digits: str) -> None:
        """Touch-tones over REST: the call's TwiML becomes ``<Play digits>`` then a
        fresh ``<Connect><Stream>``. Twilio stops this stream to run it, plays the
        tones, and opens a new stream for the same call, which takes over this
        ``CallAudio`` (``take_over``): the bridge, its model session and the record go
        on. The cost: no audio either way while the tones play, and what the agent
        was saying when the tones were sent is cut. The new stream must reach this
        server process (it is refused on another: nothing there holds the call)."""
        if self._control is None:
            raise CarrierError("cannot send DTMF: no Twilio credentials (TWILIO_ACCOUNT_SID, "
                               "TWILIO_AUTH_TOKEN)")
        if not self._stream_url:
            raise CarrierError("cannot send DTMF: the stream's URL is not known")
        if not TWILIO_DIGITS.fullmatch(digits):
            raise CarrierError(f"Twilio plays only 0-9, *, # and w as digits, not {digits!r}")
        if self._resume is not None:
            raise CarrierError("keys are already being sent on this call")
        bound_to = self._parameters.get(CALL_ID_PARAMETER) or self.info.call_id
        token = self._tokens.mint(bound_to, self.info.agent, self._resume_timeout)
        parameters = {**self._parameters, TOKEN_PARAMETER: token, RESUME_PARAMETER: "1"}
        self._resume = asyncio.get_running_loop().create_future()
        try:
            await self._control.replace_twiml(
                self.info.call_id, stream_twiml(self._stream_url, parameters, digits=digits))
        except CarrierError:
            self._resume = None
            raise

    def take_over(self, successor: TwilioCallAudio) -> bool:
        """``successor`` is the stream Twilio opened after our ``send_dtmf``: from now
        on this call's audio runs over its socket. False if no DTMF was sent."""
        if self._resume is None or self._resume.done():
            return False
        self._resume.set_result(successor)
        return True

    async def wait_finished(self) -> None:
        """Until this call's stream is closed (a successor's socket lives that long)."""
        await self._finished.wait()

    async def _take_resumed_socket(self) -> bool:
        assert self._resume is not None
        try:
            successor = await asyncio.wait_for(self._resume, self._resume_timeout)
        except TimeoutError:
            log.warning("call %s: no stream came back after DTMF", self.info.call_id)
            return False
        finally:
            self._resume = None
        with contextlib.suppress(Exception):
            await self._ws.close(code=NORMAL_CLOSURE)
        self._ws = successor._ws
        self.info.stream_id = successor.info.stream_id
        self._last_seq = successor._last_seq
        self._send_failed = False
        log.info("call %s: stream resumed as %s after DTMF", self.info.call_id,
                 self.info.stream_id)
        return True

    async def refuse(self, reason: str) -> None:
        """Close this socket as not allowed (1008)."""
        await self._close(POLICY_VIOLATION, reason)

    async def close(self) -> None:
        await self._close(NORMAL_CLOSURE, "")

    async def _close(self, code: int, reason: str) -> None:
        self._finished.set()
        if self.state is StreamState.CLOSED:
            return
        self.state = StreamState.CLOSED
        try:
            await self._ws.close(code=code, reason=reason or None)
        except Exception as exc:  # already closed by the peer
            log.debug("call %s: close after peer close (%r)", self.info.call_id, exc)
