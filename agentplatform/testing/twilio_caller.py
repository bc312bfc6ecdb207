"""A simulated Twilio phone call, for tests and load runs against a live server.

It does what Twilio does, over real sockets: POSTs the voice webhook (signed
when given the auth token), reads the TwiML, opens the ``<Stream>`` WebSocket
(signed too), sends ``connected`` and ``start`` with the ``<Parameter>`` values,
then streams the caller's line as 20 ms μ-law ``media`` frames, with silence
when the caller says nothing, because a real phone line never goes quiet.

What the server sends back is played the way Twilio plays it: queued, and
consumed by a playback clock at 8 bytes per ms. A ``mark`` is echoed when the
playback reaches it; ``clear`` drops the queue and returns every pending mark at
once. The caller records what it heard (PCM16 8 kHz, silence where nothing
played), when audio first arrived, every clear, and where each mark came back.

    async with TwilioCaller("http://127.0.0.1:8000", to="+15550100") as caller:
        await caller.wait_for_audio(timeout=5)     # the greeting starts
        await caller.wait_for_silence(600, timeout=10)
        await caller.say(pcm16_8k)                 # then silence again
        heard = caller.heard_pcm()

Its messages are built and checked by ``twilio_wire`` (written from Twilio's
documentation), never by the adapter's own ``carriers/twilio/media.py``, so the
simulator referees the adapter instead of sharing its reading of the protocol.

``line`` impairs the caller's line (noise, lost frames, jitter); ``speed`` runs both
clocks faster than real time; ``realtime=False`` sends the
caller's speech as fast as the socket takes it (idle silence stays paced).
"""

from __future__ import annotations

import asyncio
import audioop
import contextlib
import io
import secrets
import time
import wave
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit
from xml.etree import ElementTree

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from agentplatform.carriers.twilio.signature import SIGNATURE_HEADER, sign
from agentplatform.testing import twilio_wire as twilio
from agentplatform.testing.line_impairments import LineImpairments

BYTES_PER_MS = 8  # μ-law 8 kHz mono
_SILENCE_FRAME = bytes([twilio.ULAW_SILENCE]) * twilio.FRAME_BYTES
# How often the playback clock wakes (line-time ms); see ``_playback_loop``.
PLAYBACK_TICK_MS = 5


def _sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


@dataclass(slots=True)
class CallerEvent:
    at: float  # time.monotonic()
    kind: str
    detail: str = ""


@dataclass(slots=True)
class EchoedMark:
    name: str
    played_bytes: int  # how much server audio had played when the mark came back
    at: float
    cleared: bool = False  # returned by a clear rather than reached by playback


@dataclass(slots=True)
class _QueuedMark:
    name: str


@dataclass(slots=True)
class TwimlAnswer:
    """What the voice webhook answered, as the simulator understood it."""

    xml: str
    said: list[str] = field(default_factory=list)
    stream_url: str = ""
    parameters: dict[str, str] = field(default_factory=dict)
    hangup: bool = False


def parse_twiml(xml: str) -> TwimlAnswer:
    """Read the parts of a TwiML answer a streaming call cares about."""
    root = ElementTree.fromstring(xml)
    answer = TwimlAnswer(xml=xml)
    for verb in root:
        if verb.tag == "Say":
            answer.said.append(verb.text or "")
        elif verb.tag == "Hangup":
            answer.hangup = True
        elif verb.tag == "Connect":
            stream = verb.find("Stream")
            if stream is not None:
                answer.stream_url = stream.get("url", "")
                answer.parameters = {p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter")}
    return answer


_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


def stream_target(stream_url: str, base_url: str) -> str:
    """Where a simulated Twilio opens the TwiML's ``<Stream url>``: that address itself
    when it is on this machine (a media listener on its own port), over plain ``ws://``
    unless ``base_url`` is https; otherwise the server we were given (``base_url``),
    since a ``PUBLIC_URL`` host in the TwiML need not resolve here."""
    parts = urlsplit(stream_url)
    scheme = "wss" if base_url.startswith("https") else "ws"
    netloc = parts.netloc if parts.hostname in _LOOPBACK else urlsplit(base_url).netloc
    return f"{scheme}://{netloc}{parts.path}"


def read_wav_pcm16_8k(source: bytes | Path) -> bytes:
    """PCM16 mono 8 kHz frames from a WAV file; anything else is a ``ValueError``."""
    data = source.read_bytes() if isinstance(source, Path) else source
    with wave.open(io.BytesIO(data)) as wav:
        if (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) != (1, 2, 8000):
            raise ValueError("caller audio must be mono 16-bit PCM at 8000 Hz")
        return wav.readframes(wav.getnframes())


# What the simulators sign with, and what simulated servers expect (``stack.py``):
# the server fails closed without a Twilio auth token, so our own callers sign too.
SIMULATED_AUTH_TOKEN = "simulated-twilio-auth-token"


class TwilioCaller:
    """One simulated inbound call to a server that serves ``/twilio/voice``.

    Requests are signed with ``auth_token`` as Twilio signs them (the simulated
    servers' token by default); ``auth_token=""`` sends them unsigned."""

    def __init__(
        self, base_url: str, *, to: str, from_: str = "+15555550100",
        auth_token: str | None = SIMULATED_AUTH_TOKEN, public_url: str | None = None,
        speed: float = 1.0, realtime: bool = True, voice_path: str = "/twilio/voice",
        status_path: str = "/twilio/status", line: LineImpairments | None = None,
    ) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.base_url = base_url.rstrip("/")
        self.to, self.from_ = to, from_
        self.auth_token = auth_token
        self.public_url = (public_url or self.base_url).rstrip("/")
        self.speed, self.realtime = speed, realtime
        self.voice_path, self.status_path = voice_path, status_path
        # Noise, lost frames and jitter on the caller's line (``line_impairments.py``).
        self.line = line if line is not None and line.active else None
        self.call_sid, self.account_sid, self.stream_sid = _sid("CA"), _sid("AC"), _sid("MZ")

        self.answer: TwimlAnswer | None = None
        self.webhook_status = 0
        self.events: list[CallerEvent] = []
        self.marks_echoed: list[EchoedMark] = []
        self.clears: list[float] = []
        self.protocol_errors: list[str] = []
        self.first_audio_at: float | None = None
        self.close_code: int | None = None
        self.closed_by_server = False

        self._ws: ClientConnection | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._seq = 0
        self._t0 = 0.0
        self._speech = bytearray()
        self._speech_drained = asyncio.Event()
        self._speech_drained.set()
        self._playback: deque[bytes | _QueuedMark] = deque()
        self._queued_audio = 0
        self._heard = bytearray()
        self._played_audio = 0
        self._last_audio_end = 0  # position in _heard just after the last real audio byte
        self._returned_marks: list[str] = []
        self._audio_arrived = asyncio.Event()
        self._closed = asyncio.Event()
        self._hung_up = False

    # ------------------------------------------------------------ dialling

    async def __aenter__(self) -> TwilioCaller:
        if not await self.dial():
            raise RuntimeError(f"the server did not connect a stream: {self.answer.xml if self.answer else ''}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.hang_up()

    def _signed_headers(self, url: str, params: dict[str, str]) -> dict[str, str]:
        return {SIGNATURE_HEADER: sign(self.auth_token, url, params)} if self.auth_token else {}

    async def _post_form(self, path: str, params: dict[str, str]) -> httpx.Response:
        headers = self._signed_headers(self.public_url + path, params)
        async with httpx.AsyncClient() as client:
            return await client.post(self.base_url + path, data=params, headers=headers)

    async def dial(self) -> bool:
        """POST the voice webhook and, if the TwiML connects a stream, open it.
        Returns whether a stream is now running (``answer`` holds the TwiML)."""
        form = {
            "CallSid": self.call_sid, "AccountSid": self.account_sid, "From": self.from_,
            "To": self.to, "CallStatus": "ringing", "ApiVersion": "2010-04-01", "Direction": "inbound",
        }
        response = await self._post_form(self.voice_path, form)
        self.webhook_status = response.status_code
        self._log("webhook", str(response.status_code))
        if response.status_code != 200:
            return False
        self.answer = parse_twiml(response.text)
        if not self.answer.stream_url:
            return False
        await self._open_stream(self.answer)
        return True

    async def stream(self, answer: TwimlAnswer) -> None:
        """Open the ``<Stream>`` of ``answer`` as Twilio does once a call is answered
        (the REST simulator's calls, which have no voice webhook)."""
        await self._open_stream(answer)

    async def _open_stream(self, answer: TwimlAnswer) -> None:
        # Connect to the server we were given; sign the URL the TwiML named, as Twilio does.
        target = stream_target(answer.stream_url, self.base_url)
        parts = urlsplit(answer.stream_url)
        headers = self._signed_headers(f"wss://{parts.netloc}{parts.path}", {})
        self._ws = await connect(target, additional_headers=headers, compression=None)
        await self._send(twilio.encode(twilio.connected()))
        self._seq = 1
        await self._send(twilio.encode(twilio.start(
            stream_sid=self.stream_sid, account_sid=self.account_sid, call_sid=self.call_sid,
            custom_parameters=answer.parameters, sequence_number=self._seq,
        )))
        self._t0 = time.monotonic()
        self._log("start")
        for coro in (self._receive_loop(), self._send_loop(), self._playback_loop()):
            self._tasks.append(asyncio.create_task(coro))

    async def send_status(self, call_status: str) -> int:
        """POST a call status callback, as Twilio does when the call changes state."""
        form = {"CallSid": self.call_sid, "AccountSid": self.account_sid, "CallStatus": call_status}
        return (await self._post_form(self.status_path, form)).status_code

    # ------------------------------------------------------------ the caller speaks

    async def say(self, pcm16_8k: bytes) -> None:
        """Stream PCM16 8 kHz mono as the caller's voice; returns once it is sent."""
        if self._ws is None:
            raise RuntimeError("dial() first: no stream is open")
        if len(pcm16_8k) % 2:
            raise ValueError("PCM16 audio must have an even number of bytes")
        self._speech += audioop.lin2ulaw(pcm16_8k, 2)
        self._speech_drained.clear()
        await self._speech_drained.wait()

    async def say_wav(self, source: bytes | Path) -> None:
        await self.say(read_wav_pcm16_8k(source))

    async def send_dtmf(self, digit: str) -> None:
        self._seq += 1
        await self._send(twilio.encode(twilio.dtmf(stream_sid=self.stream_sid, sequence_number=self._seq,
                                                   digit=digit)))
        self._log("dtmf", digit)

    async def send_raw(self, text: str | bytes) -> None:
        """Send any frame as-is, to see how the server copes with a bad one."""
        await self._send(text)

    async def _send(self, text: str | bytes) -> None:
        if self._ws is None:
            raise RuntimeError("no stream is open")
        await self._ws.send(text)

    async def _send_loop(self) -> None:
        """The phone line: one 20 ms frame per tick, speech when there is some."""
        frame_s = twilio.FRAME_MS / 1000 / self.speed
        chunk = 0
        try:
            while True:
                if self._speech:
                    payload = bytes(self._speech[:twilio.FRAME_BYTES]).ljust(twilio.FRAME_BYTES, _SILENCE_FRAME[:1])
                    del self._speech[:twilio.FRAME_BYTES]
                else:
                    payload = _SILENCE_FRAME
                chunk += 1
                self._seq += 1
                if self.line is not None:
                    payload = self.line.frame(payload)
                    await asyncio.sleep(self.line.delay_s())
                await self._send(twilio.encode(twilio.media(
                    stream_sid=self.stream_sid, sequence_number=self._seq, chunk=chunk,
                    timestamp=(chunk - 1) * twilio.FRAME_MS, payload=payload,
                )))
                if not self._speech:
                    self._speech_drained.set()
                if self._speech and not self.realtime:
                    await asyncio.sleep(0)
                    continue
                delay = self._t0 + chunk * frame_s - time.monotonic()
                await asyncio.sleep(max(0.0, delay))
        except ConnectionClosed:
            pass
        finally:
            self._speech_drained.set()

    # ------------------------------------------------------------ the caller hears

    async def _receive_loop(self) -> None:
        assert self._ws is not None
        try:
            async for frame in self._ws:
                self._on_frame(frame)
                await self._flush_marks()
        except ConnectionClosed:
            pass
        finally:
            self.close_code = self._ws.close_code
            if not self._hung_up:
                self.closed_by_server = True
                self._log("closed", str(self.close_code))
            self._closed.set()

    def _on_frame(self, frame: str | bytes) -> None:
        if isinstance(frame, bytes):
            self._error("31950 binary frame")
            return
        try:
            msg = twilio.read_server_frame(frame)
        except twilio.ProtocolViolation as exc:
            self._error(str(exc))
            return
        if msg.stream_sid != self.stream_sid:
            self._error(f"31951 wrong streamSid {msg.stream_sid!r}")
            return
        if isinstance(msg, twilio.ServerMedia):
            if self.first_audio_at is None:
                self.first_audio_at = time.monotonic()
                self._log("first_audio")
            if msg.payload:
                self._playback.append(msg.payload)
                self._queued_audio += len(msg.payload)
                self._audio_arrived.set()
        elif isinstance(msg, twilio.ServerMark):
            self._playback.append(_QueuedMark(msg.name))
        else:
            self._on_clear()

    def _on_clear(self) -> None:
        now = time.monotonic()
        self.clears.append(now)
        self._log("clear", f"dropped {self._queued_audio} bytes")
        marks = [item for item in self._playback if isinstance(item, _QueuedMark)]
        self._playback.clear()
        self._queued_audio = 0
        # Twilio sends every pending mark back at once; they go out on the next flush.
        self._returned_marks = [m.name for m in marks]
        for mark in marks:
            self.marks_echoed.append(EchoedMark(mark.name, self._played_audio, now, cleared=True))

    async def _flush_marks(self) -> None:
        """Echo cleared marks, and marks with no audio left ahead of them."""
        returned, self._returned_marks = self._returned_marks, []
        for name in returned:
            await self._echo(name)
        while self._playback and isinstance(self._playback[0], _QueuedMark):
            mark = self._playback.popleft()
            assert isinstance(mark, _QueuedMark)
            self.marks_echoed.append(EchoedMark(mark.name, self._played_audio, time.monotonic()))
            await self._echo(mark.name)

    async def _echo(self, name: str) -> None:
        self._seq += 1
        with contextlib.suppress(ConnectionClosed):
            await self._send(twilio.encode(twilio.mark(stream_sid=self.stream_sid,
                                                       sequence_number=self._seq, name=name)))
        self._log("mark", name)

    async def _playback_loop(self) -> None:
        """Twilio's playback clock: consume the queue at 8 bytes/ms of line time.

        It wakes every 5 ms, not every 20 ms frame: a mark goes back when playback
        reaches it, and a coarser clock would echo marks up to a frame late, which the
        bridge's heard position and a recording's agent track would then inherit."""
        tick_s = PLAYBACK_TICK_MS / 1000 / self.speed
        while not self._closed.is_set():
            await asyncio.sleep(tick_s)
            due = int((time.monotonic() - self._t0) * self.speed * 1000) * BYTES_PER_MS
            need = due - len(self._heard)
            while need > 0:
                need = self._play(need)
                await self._flush_marks()

    def _play(self, need: int) -> int:
        """Play up to ``need`` bytes; stop early at a due mark. Returns what is left."""
        while need > 0:
            head = self._playback[0] if self._playback else None
            if isinstance(head, bytes):
                take = head[:need]
                if len(take) == len(head):
                    self._playback.popleft()
                else:
                    self._playback[0] = head[need:]
                self._heard += take
                self._played_audio += len(take)
                self._queued_audio -= len(take)
                self._last_audio_end = len(self._heard)
                need -= len(take)
            elif isinstance(head, _QueuedMark):
                return need  # a mark is due: echo it before playing on
            else:
                self._heard += _SILENCE_FRAME[:1] * need
                return 0
        return 0

    # ------------------------------------------------------------ waiting

    async def wait_for_audio(self, timeout: float) -> float:
        """Wait until server audio is queued or playing; returns ``time.monotonic()``."""
        async with asyncio.timeout(timeout):
            while self._queued_audio <= 0:
                self._audio_arrived.clear()
                await self._audio_arrived.wait()
        return time.monotonic()

    async def wait_for_silence(self, ms: float, timeout: float) -> None:
        """Wait until nothing is queued and the line has been quiet for ``ms``
        (line time) since the last server audio played."""
        async with asyncio.timeout(timeout):
            while self._queued_audio > 0 or (len(self._heard) - self._last_audio_end) < ms * BYTES_PER_MS:
                await asyncio.sleep(twilio.FRAME_MS / 1000 / self.speed)

    async def wait_for_marks(self, count: int, timeout: float) -> list[EchoedMark]:
        """Wait until ``count`` marks have been echoed in all."""
        async with asyncio.timeout(timeout):
            while len(self.marks_echoed) < count:
                await asyncio.sleep(twilio.FRAME_MS / 1000 / self.speed)
        return self.marks_echoed

    async def wait_closed(self, timeout: float) -> int | None:
        """Wait until the stream's socket is closed; returns the close code."""
        async with asyncio.timeout(timeout):
            await self._closed.wait()
        return self.close_code

    # ------------------------------------------------------------ results and hang up

    def heard_ulaw(self) -> bytes:
        return bytes(self._heard)

    def heard_pcm(self) -> bytes:
        """Everything the caller heard since the stream started, PCM16 8 kHz mono."""
        return audioop.ulaw2lin(bytes(self._heard), 2)

    @property
    def played_ms(self) -> float:
        """How much server audio has played (not counting silence)."""
        return self._played_audio / BYTES_PER_MS

    async def hang_up(self) -> None:
        """Send ``stop`` and close the socket, as Twilio does when the caller hangs up."""
        if self._hung_up:
            return
        self._hung_up = True
        if self._ws is not None and not self._closed.is_set():
            self._seq += 1
            with contextlib.suppress(ConnectionClosed):
                await self._send(twilio.encode(twilio.stop(
                    stream_sid=self.stream_sid, sequence_number=self._seq,
                    account_sid=self.account_sid, call_sid=self.call_sid,
                )))
            self._log("stop")
            await self._ws.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    def _log(self, kind: str, detail: str = "") -> None:
        self.events.append(CallerEvent(time.monotonic(), kind, detail))

    def _error(self, text: str) -> None:
        self.protocol_errors.append(text)
        self._log("protocol_error", text)


__all__ = ["CallerEvent", "EchoedMark", "TwilioCaller", "TwimlAnswer", "parse_twiml", "read_wav_pcm16_8k"]
