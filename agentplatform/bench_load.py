"""The load generator of ``make bench``: simulated Twilio callers and a simulated
OpenAI Realtime model, cheap enough to drive hundreds of calls from one core, timing
everything from outside the server under test on one clock.

Why it is built this way:

- **One clock, outside the server.** Every latency is stamped here with
  ``time.monotonic()`` (CLOCK_MONOTONIC, one clock for every process of the machine):
  caller sent → model received; model sent → caller received; model's
  ``speech_started`` sent → caller's ``clear`` received. So a frame's wait in socket
  buffers and in the server's ready queue is counted, which stamps taken inside the
  server miss.
- **Tagged audio.** Each 20 ms frame is a constant level whose μ-law code is the tag:
  a constant survives μ-law decoding, resampling (a filter passes DC) and re-encoding,
  so the receiver reads the code from the middle sample of each 20 ms block and the
  sender's record says when that frame left. Speech frames use loud codes, idle line
  frames quiet ones (below the model's energy gate).
- **Cheap.** uvloop, picows (a compiled WebSocket), frames built by string
  concatenation from precomputed parts, and one 1 ms tick per process that serves
  each call once per 20 ms in its own phase (no task or timer per call). Several
  processes share the work; the fake model listens on one port with SO_REUSEPORT.
- **Honest about itself.** Every process records how late each tick ran; a level
  whose load lagged is not reported (``bench.py``).

A caller: dials the voice webhook (signed), opens the stream, sends ``connected`` and
``start``, then a frame every 20 ms; plays what it receives at 8 bytes per ms, echoes
each ``mark`` when playback reaches it, honours ``clear`` (pending marks come back at
once); after hearing 0.5 s of an answer it talks over it for 1.2 s.
The model: answers ``session.created``/``session.updated``; an energy gate on the
tagged frames sends ``speech_started`` (cancelling a running answer) and, after
300 ms of quiet, ``speech_stopped`` and a 1.5 s answer streamed in real time in 20 ms
deltas; it checks every truncate against the audio it sent for that item.
"""

from __future__ import annotations

import asyncio
import audioop
import base64
import binascii
import contextlib
import os
import re
import secrets
import socket
import time
from array import array
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import orjson

FRAME_MS = 20
TICKS_PER_FRAME = 20  # a 1 ms tick; each call is served on one tick in twenty
SPEECH_FRAMES = 60  # the caller talks 1.2 s
HEAR_BEFORE_BARGE_S = 0.5
REPLY_FRAMES = 75  # 1.5 s answers
QUIET_FRAMES_TO_STOP = 15  # 300 ms of quiet ends the caller's turn
LOUD_LEVEL = 1000  # |sample| above this is speech to the model's energy gate

_DECODE = [int.from_bytes(audioop.ulaw2lin(bytes([c]), 2), "little", signed=True) for c in range(256)]
# Tags: quiet codes stay far under the gate, loud codes far over it; 0 (two codes) is out.
QUIET_CODES = bytes(c for c in range(256) if 0 < abs(_DECODE[c]) <= 124)
LOUD_CODES = bytes(c for c in range(256) if 2000 <= abs(_DECODE[c]) <= 8200)
_LOUD_SET = frozenset(LOUD_CODES)
_LIN2ULAW = {v: c for c, v in enumerate(_DECODE) if c not in (0x7F,)}


def code_of_sample(sample: int) -> int:
    """The μ-law code of one 16-bit sample."""
    return audioop.lin2ulaw(sample.to_bytes(2, "little", signed=True), 2)[0]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# Precomputed payloads, by code: 160 μ-law bytes (8 kHz) and 480 PCM16 samples (24 kHz).
ULAW_B64 = {c: _b64(bytes([c]) * 160) for c in range(256)}
PCM24_B64 = {c: _b64(_DECODE[c].to_bytes(2, "little", signed=True) * 480) for c in range(256)}


def pct(values: list[float] | array, p: float) -> float:
    if not len(values):
        return 0.0
    data = sorted(values)
    return data[min(len(data) - 1, int(p / 100 * (len(data) - 1)))]


# ---------------------------------------------------------------------- records


@dataclass(slots=True)
class Stream:
    """Times and tags of frames, in the order they were sent or received."""

    times: array = field(default_factory=lambda: array("d"))
    codes: bytearray = field(default_factory=bytearray)

    def add(self, t: float, code: int) -> None:
        self.times.append(t)
        self.codes.append(code)


@dataclass(slots=True)
class CallRecord:
    """One call, as seen by whichever side recorded it (merged by the caller's number)."""

    key: str
    caller_sent: Stream = field(default_factory=Stream)
    caller_heard: Stream = field(default_factory=Stream)
    clears: array = field(default_factory=lambda: array("d"))
    model_heard: Stream = field(default_factory=Stream)
    model_sent: Stream = field(default_factory=Stream)
    speech_started: array = field(default_factory=lambda: array("d"))
    truncates: int = 0
    truncates_rejected: int = 0
    connected: bool = False
    closed_early: bool = False

    def merge(self, other: CallRecord) -> None:
        for name in ("caller_sent", "caller_heard", "model_heard", "model_sent"):
            mine, theirs = getattr(self, name), getattr(other, name)
            if len(theirs.times):
                mine.times.extend(theirs.times)
                mine.codes.extend(theirs.codes)
        self.clears.extend(other.clears)
        self.speech_started.extend(other.speech_started)
        self.truncates += other.truncates
        self.truncates_rejected += other.truncates_rejected
        self.connected |= other.connected
        self.closed_early |= other.closed_early


def match(sent: Stream, heard: Stream, t0: float, t1: float, window: int = 64) -> list[float]:
    """Latency (ms) of each heard frame sent in [t0, t1]: walk both in order, the next
    sent frame with the same tag is the one heard (frames a server dropped are skipped)."""
    out: list[float] = []
    i, n = 0, len(sent.times)
    st, sc = sent.times, sent.codes
    for t, code in zip(heard.times, heard.codes):
        j = i
        limit = min(n, i + window)
        while j < limit and (sc[j] != code or st[j] > t):
            j += 1
        if j >= limit:
            continue
        if t0 <= st[j] <= t1:
            out.append((t - st[j]) * 1000.0)
        i = j + 1
    return out


def barge_latencies(started: array, clears: array, t0: float, t1: float) -> tuple[list[float], int]:
    """Speech start sent by the model → the caller's next clear, and how many got none."""
    out: list[float] = []
    missing = 0
    clears_sorted = sorted(clears)
    starts = sorted(started)
    k = 0
    for idx, s in enumerate(starts):
        if not t0 <= s <= t1:
            continue
        nxt = starts[idx + 1] if idx + 1 < len(starts) else float("inf")
        while k < len(clears_sorted) and clears_sorted[k] < s:
            k += 1
        if k < len(clears_sorted) and clears_sorted[k] < nxt:
            out.append((clears_sorted[k] - s) * 1000.0)
        else:
            missing += 1
    return out, missing


# ---------------------------------------------------------------------- the model


class _ModelCall:
    """One connection from the server under test to the simulated model."""

    __slots__ = (
        "event_n",
        "frame_bytes",
        "frames_left",
        "gen",
        "item_id",
        "item_ms",
        "key",
        "out_k",
        "pcm",
        "quiet",
        "record",
        "resp_id",
        "slot",
        "speaking",
        "transport",
    )

    def __init__(self, gen: Generator) -> None:
        self.gen = gen
        self.transport: Any = None
        self.record: CallRecord | None = None
        self.pcm = True
        self.frame_bytes = 960
        self.speaking = False
        self.quiet = 0
        self.resp_id = ""
        self.item_id = ""
        self.frames_left = 0
        self.out_k = 0
        self.item_ms: dict[str, int] = {}
        self.event_n = 0
        self.key = ""
        self.slot = gen.next_model_slot()

    def send(self, event: dict[str, Any]) -> None:
        self.event_n += 1
        event["event_id"] = f"ev{self.event_n}"
        self.transport.send(_TEXT, orjson.dumps(event))

    def on_message(self, raw: bytes) -> None:
        now = time.monotonic()
        if raw.startswith(b'{"type":"input_audio_buffer.append"'):
            self.on_audio(raw, now)
            return
        event = orjson.loads(raw)
        kind = event.get("type")
        if kind == "session.update":
            session = event.get("session") or {}
            fmt = (((session.get("audio") or {}).get("input") or {}).get("format") or {}).get("type", "")
            self.pcm = fmt != "audio/pcmu"
            self.frame_bytes = 960 if self.pcm else 160
            m = re.search(r"caller (\+\d+)", str(session.get("instructions", "")))
            if m:
                self.key = m.group(1)
                self.record = self.gen.record(self.key)
            self.send({"type": "session.updated", "session": session})
        elif kind == "input_audio_buffer.append":
            self.on_audio(raw, now)
        elif kind == "response.create":
            if self.resp_id:
                self.send({"type": "error", "error": {
                    "type": "invalid_request_error",
                    "code": "conversation_already_has_active_response",
                    "message": "Conversation already has an active response in progress."}})
            else:
                self.start_response()
        elif kind == "response.cancel":
            if self.resp_id:
                self.end_response("cancelled")
            else:
                self.send({"type": "error", "error": {
                    "type": "invalid_request_error", "code": "response_cancel_not_active",
                    "message": "Cancellation failed: no active response found."}})
        elif kind == "conversation.item.truncate":
            item, end_ms = event.get("item_id"), event.get("audio_end_ms")
            rec = self.record
            if rec is not None:
                rec.truncates += 1
            if item not in self.item_ms or not isinstance(end_ms, int) or end_ms > self.item_ms[item]:
                if rec is not None:
                    rec.truncates_rejected += 1
                self.send({"type": "error", "error": {
                    "type": "invalid_request_error", "code": "invalid_value",
                    "param": "audio_end_ms", "message": "Audio content is shorter than audio_end_ms."}})
            else:
                self.send({"type": "conversation.item.truncated", "item_id": item,
                           "content_index": 0, "audio_end_ms": end_ms})

    def on_audio(self, raw: bytes, now: float) -> None:
        start = raw.index(b'"audio":"') + 9
        end = raw.index(b'"', start)
        audio = binascii.a2b_base64(raw[start:end])
        rec = self.record
        step = self.frame_bytes
        for off in range(0, len(audio) - step + 1, step):
            if self.pcm:
                mid = off + step // 2
                code = _LIN2ULAW.get(int.from_bytes(audio[mid:mid + 2], "little", signed=True))
                if code is None:
                    code = code_of_sample(int.from_bytes(audio[mid:mid + 2], "little", signed=True))
            else:
                code = audio[off + step // 2]
            if rec is not None:
                rec.model_heard.add(now, code)
            self.vad(code in _LOUD_SET, now)

    def vad(self, loud: bool, now: float) -> None:
        if loud:
            self.quiet = 0
            if not self.speaking:
                self.speaking = True
                if self.record is not None:
                    self.record.speech_started.append(time.monotonic())
                self.send({"type": "input_audio_buffer.speech_started", "audio_start_ms": 0,
                           "item_id": "item_in"})
                if self.resp_id:  # interrupt_response: the server cancels the answer itself
                    self.end_response("cancelled")
            return
        if self.speaking:
            self.quiet += 1
            if self.quiet >= QUIET_FRAMES_TO_STOP:
                self.speaking = False
                self.send({"type": "input_audio_buffer.speech_stopped", "audio_end_ms": 0,
                           "item_id": "item_in"})
                self.send({"type": "input_audio_buffer.committed", "item_id": "item_in",
                           "previous_item_id": None})
                self.send({"type": "conversation.item.input_audio_transcription.completed",
                           "item_id": "item_in", "content_index": 0, "transcript": "hello there"})
                if not self.resp_id:
                    self.start_response()

    def start_response(self) -> None:
        self.resp_id = "resp_" + secrets.token_hex(6)
        self.item_id = "item_" + secrets.token_hex(6)
        self.frames_left = REPLY_FRAMES
        self.item_ms[self.item_id] = 0
        if len(self.item_ms) > 8:
            self.item_ms.pop(next(iter(self.item_ms)))
        self.send({"type": "response.created", "response": {
            "id": self.resp_id, "object": "realtime.response", "status": "in_progress", "output": []}})
        self.gen.model_slots[self.slot].add(self)

    def tick(self) -> None:
        """One 20 ms delta of the running answer."""
        code = LOUD_CODES[self.out_k % len(LOUD_CODES)]
        self.out_k += 1
        payload = PCM24_B64[code] if self.pcm else ULAW_B64[code]
        self.transport.send(_TEXT, (
            '{"type":"response.output_audio.delta","response_id":"' + self.resp_id
            + '","item_id":"' + self.item_id
            + '","output_index":0,"content_index":0,"delta":"' + payload + '"}').encode())
        if self.record is not None:
            self.record.model_sent.add(time.monotonic(), code)
        self.item_ms[self.item_id] += FRAME_MS
        self.frames_left -= 1
        if self.frames_left <= 0:
            self.end_response("completed")

    def end_response(self, status: str) -> None:
        where = {"response_id": self.resp_id, "item_id": self.item_id, "output_index": 0,
                 "content_index": 0}
        self.send({"type": "response.output_audio.done", **where})
        self.send({"type": "response.output_audio_transcript.done", **where,
                   "transcript": "this is the answer of the benchmark line"})
        self.send({"type": "response.done", "response": {
            "id": self.resp_id, "object": "realtime.response", "status": status,
            "status_details": {"type": status}, "output": [], "usage": None}})
        self.resp_id = ""
        self.gen.model_slots[self.slot].discard(self)


# ---------------------------------------------------------------------- the caller


class _Caller:
    """One simulated Twilio call."""

    __slots__ = (
        "answer_start",
        "chunk",
        "closed",
        "gen",
        "k",
        "key",
        "marks",
        "play_end",
        "prefix",
        "record",
        "seq",
        "stream_sid",
        "talk_left",
        "transport",
    )

    def __init__(self, gen: Generator, key: str) -> None:
        self.gen = gen
        self.key = key
        self.transport: Any = None
        self.record = gen.record(key)
        self.stream_sid = "MZ" + secrets.token_hex(16)
        self.seq = 1
        self.chunk = 0
        self.k = 0
        self.talk_left = 0
        self.play_end = 0.0
        self.answer_start: float | None = None
        self.marks: deque[tuple[float, str]] = deque()
        self.prefix = '{"event":"media","streamSid":"' + self.stream_sid + '","sequenceNumber":"'
        self.closed = False

    def tick(self, now: float) -> None:
        """Send this 20 ms frame; echo the marks playback has reached; barge in when due."""
        if self.closed:
            return
        while self.marks and self.marks[0][0] <= now:
            self._echo_mark(self.marks.popleft()[1])
        if self.answer_start is not None and self.talk_left == 0 \
                and now >= self.answer_start + HEAR_BEFORE_BARGE_S:
            self.answer_start = None
            self.talk_left = SPEECH_FRAMES
        if self.talk_left:
            self.talk_left -= 1
            code = LOUD_CODES[self.k % len(LOUD_CODES)]
        else:
            code = QUIET_CODES[self.k % len(QUIET_CODES)]
        self.k += 1
        self.seq += 1
        ts = self.chunk * FRAME_MS
        self.chunk += 1
        self.transport.send(_TEXT, (
            self.prefix + str(self.seq) + '","media":{"track":"inbound","chunk":"' + str(self.chunk)
            + '","timestamp":"' + str(ts) + '","payload":"' + ULAW_B64[code] + '"}}').encode())
        self.record.caller_sent.add(time.monotonic(), code)

    def _echo_mark(self, name: str) -> None:
        self.seq += 1
        self.transport.send(_TEXT, orjson.dumps({
            "event": "mark", "sequenceNumber": str(self.seq), "streamSid": self.stream_sid,
            "mark": {"name": name}}))

    def on_message(self, raw: bytes) -> None:
        now = time.monotonic()
        if raw.startswith(b'{"event":"media"'):
            start = raw.index(b'"payload":"') + 11
            end = raw.index(b'"', start)
            audio = binascii.a2b_base64(raw[start:end])
            for off in range(80, len(audio), 160):
                self.record.caller_heard.add(now, audio[off])
            if self.play_end < now:
                self.play_end = now
                if self.talk_left == 0 and self.answer_start is None:
                    self.answer_start = now
            self.play_end += len(audio) / 8000.0
            return
        msg = orjson.loads(raw)
        event = msg.get("event")
        if event == "mark":
            self.marks.append((self.play_end, msg["mark"]["name"]))
        elif event == "clear":
            self.record.clears.append(now)
            self.play_end = now
            self.answer_start = None
            while self.marks:
                self._echo_mark(self.marks.popleft()[1])


# ---------------------------------------------------------------------- the process


try:
    import picows

    _TEXT = picows.WSMsgType.TEXT

    class _Listener(picows.WSListener):
        """Hands each whole text frame to its owner (a caller or a model connection)."""

        def __init__(self, owner: Any) -> None:
            self.owner = owner
            self._parts: list[bytes] = []

        def on_ws_connected(self, transport: Any) -> None:
            self.owner.transport = transport
            if isinstance(self.owner, _ModelCall):
                self.owner.send({"type": "session.created", "session": {
                    "type": "realtime", "id": "sess_" + secrets.token_hex(6)}})

        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            kind = frame.msg_type
            if kind == picows.WSMsgType.CLOSE:
                transport.send_close(frame.get_close_code())
                transport.disconnect()
                return
            if kind == picows.WSMsgType.PING:
                transport.send_pong(frame.get_payload_as_bytes())
                return
            if not frame.fin or self._parts:
                self._parts.append(frame.get_payload_as_bytes())
                if not frame.fin:
                    return
                data, self._parts = b"".join(self._parts), []
            else:
                data = frame.get_payload_as_bytes()
            try:
                self.owner.on_message(data)
            except Exception:  # noqa: BLE001 - a bad frame is counted, the load goes on
                self.owner.gen.errors += 1

        def on_ws_disconnected(self, transport: Any) -> None:
            owner = self.owner
            if isinstance(owner, _Caller):
                owner.closed = True
                owner.gen.live -= 1
            else:
                owner.gen.model_slots[owner.slot].discard(owner)
except ImportError:  # pragma: no cover - picows is a dependency; import errors say so
    picows = None  # type: ignore[assignment]
    _TEXT = None


class Generator:
    """One load process: its callers, its share of model connections, one tick."""

    def __init__(self, base_url: str, auth_token: str, numbers: list[str], to: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.auth_token = auth_token
        self.numbers = numbers
        self.to = to
        self.records: dict[str, CallRecord] = {}
        self.callers: list[_Caller] = []
        # Model connections with an answer running, by the tick they are served on.
        self.model_slots: list[set[_ModelCall]] = [set() for _ in range(TICKS_PER_FRAME)]
        self._model_n = 0
        self.slots: list[list[_Caller]] = [[] for _ in range(TICKS_PER_FRAME)]
        self.lags: array = array("d")
        self.errors = 0
        self.failed = 0
        self.refused = 0
        self.failures: list[str] = []
        self.live = 0

    def next_model_slot(self) -> int:
        self._model_n += 1
        return (self._model_n * 7) % TICKS_PER_FRAME

    def record(self, key: str) -> CallRecord:
        rec = self.records.get(key)
        if rec is None:
            rec = self.records[key] = CallRecord(key)
        return rec

    async def serve_model(self, port: int) -> Any:
        def factory(request: Any) -> Any:
            return _Listener(_ModelCall(self))
        return await picows.ws_create_server(factory, "127.0.0.1", port, reuse_port=True,
                                             enable_auto_pong=True)

    async def dial(self, http: Any, number: str, slot: int) -> None:
        from agentplatform.carriers.twilio.signature import SIGNATURE_HEADER, sign
        from agentplatform.testing.twilio_caller import parse_twiml, stream_target

        form = {"CallSid": "CA" + secrets.token_hex(16), "AccountSid": "AC" + secrets.token_hex(16),
                "From": number, "To": self.to, "CallStatus": "ringing",
                "ApiVersion": "2010-04-01", "Direction": "inbound"}
        try:
            url = self.base_url + "/twilio/voice"
            resp = await http.post(url, data=form,
                                   headers={SIGNATURE_HEADER: sign(self.auth_token, url, form)})
            answer = parse_twiml(resp.text)
            if resp.status_code == 200 and not answer.stream_url and answer.said:
                self.refused += 1  # the busy message: the server shed this call
                return
            if resp.status_code != 200 or not answer.stream_url:
                self.failed += 1
                if len(self.failures) < 5:
                    self.failures.append(f"webhook {resp.status_code}: {resp.text[:120]}")
                return
            parts = urlsplit(answer.stream_url)
            target = stream_target(answer.stream_url, self.base_url)  # the listener's port, if on
            headers = {SIGNATURE_HEADER: sign(self.auth_token, f"wss://{parts.netloc}{parts.path}", {})}
            caller = _Caller(self, number)
            # A slow set-up is still a call: only the steady state is timed.
            await picows.ws_connect(lambda: _Listener(caller), target, extra_headers=headers,
                                    websocket_handshake_timeout=30)
        except Exception as exc:  # noqa: BLE001 - a refused call is a result
            self.failed += 1
            if len(self.failures) < 5:
                self.failures.append(repr(exc)[:200])
            return
        caller.transport.send(_TEXT, orjson.dumps(
            {"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        caller.transport.send(_TEXT, orjson.dumps({
            "event": "start", "sequenceNumber": "1", "streamSid": caller.stream_sid,
            "start": {"accountSid": form["AccountSid"], "streamSid": caller.stream_sid,
                      "callSid": form["CallSid"], "tracks": ["inbound"],
                      "customParameters": answer.parameters,
                      "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}))
        caller.record.connected = True
        self.live += 1
        self.callers.append(caller)
        self.slots[slot % TICKS_PER_FRAME].append(caller)

    async def run(self, model_port: int, start_at: float, ramp: float, stop_at: float,
                  record_from: float) -> dict[str, Any]:
        import httpx

        server = await self.serve_model(model_port)
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        tick_n = 0
        t_base = start_at

        def tick() -> None:
            nonlocal tick_n
            now = time.monotonic()
            due = t_base + tick_n * 0.001
            if now >= record_from:
                self.lags.append((now - due) * 1000.0)
            # Catch up on missed ticks, so a late tick never drops a frame.
            while due <= now:
                slot = tick_n % TICKS_PER_FRAME
                for caller in self.slots[slot]:
                    caller.tick(now)
                for model in list(self.model_slots[slot]):
                    model.tick()
                tick_n += 1
                due = t_base + tick_n * 0.001
            if now >= stop_at:
                done.set_result(None)
                return
            loop.call_later(max(0.0, due - time.monotonic()), tick)

        await asyncio.sleep(max(0.0, start_at - time.monotonic()))
        loop.call_soon(tick)
        limits = httpx.Limits(max_connections=20)
        async with httpx.AsyncClient(limits=limits, timeout=30) as http:
            pending = []
            n = len(self.numbers)
            for i, number in enumerate(self.numbers):
                at = start_at + ramp * i / max(1, n)
                await asyncio.sleep(max(0.0, at - time.monotonic()))
                pending.append(asyncio.create_task(self.dial(http, number, i)))
            await asyncio.gather(*pending)
            await done
        for caller in self.callers:
            if caller.closed:
                caller.record.closed_early = True
            with contextlib.suppress(Exception):
                caller.transport.send_close(picows.WSCloseCode.OK)
                caller.transport.disconnect()
        server.close()
        return {"records": self.records, "lags": self.lags, "errors": self.errors,
                "failed": self.failed, "refused": self.refused, "failures": self.failures}


def run_process(args: dict[str, Any], conn: Any) -> None:
    """Entry point of one load process (``multiprocessing``): pin, uvloop, run, report."""
    import uvloop

    cpu = args.get("cpu")
    if cpu is not None:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {cpu})
    gen = Generator(args["base_url"], args["auth_token"], args["numbers"], args["to"])
    try:
        result = uvloop.run(gen.run(args["model_port"], args["start_at"], args["ramp"],
                                    args["stop_at"], args["record_from"]))
        conn.send(result)
    except Exception as exc:  # noqa: BLE001 - the parent reports it
        conn.send({"error": repr(exc)})
    finally:
        conn.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
