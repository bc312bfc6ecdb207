"""Fuzz scripts for Twilio Media Streams: whole calls as Twilio would send them,
with valid frames, frames broken in one known way, random JSON shapes and wrong
orders mixed in, each labelled with what the server must make of it.

Every frame is built with ``twilio_wire`` (written from Twilio's documentation),
then bent; numbering follows Twilio (one ``sequenceNumber`` counter for every
message of the stream), and the script tracks which number the stream will have
taken last, so a frame meant to be out of order is exactly that. Played by
``fuzz_carriers``.
"""

from __future__ import annotations

import string
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from agentplatform.carriers.tokens import StreamTokens
from agentplatform.carriers.twilio.media import MAX_FRAME_CHARS
from agentplatform.testing import twilio_wire as twilio

SID = "MZ" + "5" * 32
CALL = "CA" + "7" * 32
ACCOUNT = "AC" + "9" * 32
AGENT = "fuzz"
TOKENS = StreamTokens(b"fuzz-secret")
ITEM = "item1"
GREETING_MS = 1000  # the answer the model is speaking when the fuzzed frames arrive
SENTINEL = bytes(range(0x30, 0x30 + 160))  # the last valid audio; its arrival triggers barge-in


Frame = str | bytes


# ------------------------------------------------------------------ the script


@dataclass(slots=True)
class Script:
    """A fuzzed call: the frames Twilio sends and what the server must make of them."""

    frames: list[Frame] = field(default_factory=list)
    start_index: int = 0  # frames[start_index] is the good ``start``
    sentinel_index: int = 0  # frames[sentinel_index] is the last valid media
    kinds: Counter[str] = field(default_factory=Counter)  # expected malformed counts
    audio: list[bytes] = field(default_factory=list)  # expected at the model, in order
    digits: list[str] = field(default_factory=list)  # expected DTMF, in order
    exact: bool = True  # False when random shapes make the expectations loose


_B64_ALPHABET = string.ascii_letters + string.digits + "+/"
_NOT_B64 = "@!$%&()-_.,:;?~ \t\n\"'\\é€\x00"
_json_leaf = (st.none() | st.booleans() | st.integers() | st.text(max_size=12)
              | st.floats(allow_nan=False, allow_infinity=False))
_json = st.recursive(_json_leaf, lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=6)
_not_a_number = st.one_of(
    st.sampled_from(["", "x", "-1", "1.5", "1e3", " ", "0x10", "9" * 40]),
    st.sampled_from([None, True, False, 1.5, -1, 2**60, [], {}]), st.lists(st.integers(), max_size=2),
)
_not_a_string = st.one_of(st.none(), st.booleans(), st.integers(),
                          st.floats(allow_nan=False, allow_infinity=False),
                          st.lists(st.text(max_size=3), max_size=2),
                          st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=2))
_bad_b64 = st.one_of(
    _not_a_string,
    st.builds(lambda a, bad, b: a + bad + b, st.text(_B64_ALPHABET, max_size=12),
              st.sampled_from(_NOT_B64), st.text(_B64_ALPHABET + "=", max_size=12)),
    st.text(_B64_ALPHABET, min_size=1, max_size=41).filter(lambda s: len(s) % 4 == 1),
)
_other_sid = st.text(min_size=1, max_size=40).filter(lambda s: s != SID)
_mark_names = st.one_of(
    st.text(max_size=40),
    st.builds(lambda gen, item, end: f"{gen}:{item}:{end}", st.integers(-1, 2),
              st.sampled_from([ITEM, "item2", ""]),
              st.one_of(st.sampled_from(["inf", "-inf", "nan", "1e400", "1_0", "", "5e3", "-5"]),
                        st.floats().map(repr), st.integers(-10**6, 10**9).map(str))),
)
_audio = st.binary(max_size=320)
_near_bodies = st.fixed_dictionaries({}, optional={  # fields of the protocol, values near right
    "track": st.sampled_from(["inbound", "outbound"]) | _json,
    "timestamp": st.integers(0, 10**6).map(str) | _json,
    "chunk": st.integers(0, 10**6).map(str) | _json,
    "payload": _audio.map(twilio.b64) | _json,
    "name": _mark_names | _json,
    "digit": st.sampled_from(twilio.DTMF_DIGITS) | _json,
})


class _Builder:
    """Draws one fuzz script, numbering frames as Twilio does (one counter for all)."""

    def __init__(self, draw: Any, random_shapes: bool) -> None:
        self.draw = draw
        self.random_shapes = random_shapes
        self.script = Script(exact=not random_shapes)
        self.seq = 0
        self.accepted = 0  # the newest sequence number the stream will have taken
        self.chunk = 0

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def add(self, frame: dict[str, Any] | Frame, kind: str | None = None) -> None:
        self.script.frames.append(twilio.encode(frame) if isinstance(frame, dict) else frame)
        if kind is not None:
            self.script.kinds[kind] += 1

    # -- valid frames

    def media(self, payload: bytes, sid: str = SID, seq: int | None = None) -> dict[str, Any]:
        self.chunk += 1
        return twilio.media(stream_sid=sid, sequence_number=self.next_seq() if seq is None else seq,
                            chunk=self.chunk, timestamp=self.chunk * twilio.FRAME_MS, payload=payload)

    def mark(self, name: str, sid: str = SID) -> dict[str, Any]:
        return twilio.mark(stream_sid=sid, sequence_number=self.next_seq(), name=name)

    def dtmf(self, digit: str, sid: str = SID) -> dict[str, Any]:
        return twilio.dtmf(stream_sid=sid, sequence_number=self.next_seq(), digit=digit)

    def stop(self, sid: str = SID) -> dict[str, Any]:
        return twilio.stop(stream_sid=sid, sequence_number=self.next_seq(), account_sid=ACCOUNT,
                           call_sid=CALL)

    def start(self, sid: str = SID) -> dict[str, Any]:
        token = TOKENS.mint(CALL, AGENT, 600)
        return twilio.start(stream_sid=sid, account_sid=ACCOUNT, call_sid=CALL,
                            sequence_number=self.next_seq(),
                            custom_parameters={"token": token, "agent": AGENT, "from": "+1555"})

    def any_valid(self, sid: str = SID) -> dict[str, Any]:
        which = self.draw(st.sampled_from(["media", "mark", "dtmf", "stop"]))
        if which == "media":
            return self.media(self.draw(_audio), sid)
        if which == "mark":
            return self.mark(self.draw(_mark_names), sid)
        if which == "dtmf":
            return self.dtmf(self.draw(st.sampled_from(twilio.DTMF_DIGITS)), sid)
        return self.stop(sid)

    # -- broken frames, each with the one kind it must be counted as

    def junk(self) -> tuple[Frame | dict[str, Any], str]:
        kind = self.draw(st.sampled_from(
            ["bad_json", "binary", "oversize", "unknown_event", "bad_payload", "bad_shape"]))
        draw = self.draw
        if kind == "bad_json":
            whole = twilio.encode(self.any_valid())
            frame = draw(st.one_of(
                st.integers(0, len(whole) - 1).map(lambda n: whole[:n]),  # a cut-off object
                _json.filter(lambda v: not isinstance(v, dict)).map(twilio.encode),
                # a lone surrogate anywhere: text that has no UTF-8 form
                st.integers(0, len(whole)).map(lambda n: whole[:n] + "\ud800" + whole[n:]),
                # numbers JSON does not have (Python's json module writes them)
                st.sampled_from(["NaN", "Infinity", "-Infinity"]).map(
                    lambda n: whole.replace('"sequenceNumber":"', f'"x":{n},"sequenceNumber":"', 1)),
            ))
            return frame, kind
        if kind == "binary":
            return draw(st.binary(max_size=64)), kind
        if kind == "oversize":
            if draw(st.booleans()):
                return self.media(bytes(MAX_FRAME_CHARS * 3 // 4 + 64)), kind
            return twilio.encode(self.any_valid()) + " " * MAX_FRAME_CHARS, kind
        if kind == "unknown_event":
            msg = self.any_valid()
            event = draw(st.one_of(st.text(max_size=12), _not_a_string, st.just(None)))
            if event is None:
                del msg["event"]
            else:
                msg["event"] = event
            if isinstance(msg.get("event"), str) and msg["event"] in {
                    "connected", "start", "media", "mark", "dtmf", "stop"}:
                msg["event"] = "x" + msg["event"]
            return msg, kind
        if kind == "bad_payload":
            msg = self.media(b"")
            value = draw(_bad_b64)
            msg["media"]["payload"] = value
            return msg, kind
        return self.bad_shape(), kind

    def bad_shape(self) -> dict[str, Any]:
        """A valid message with exactly one field missing or of the wrong type."""
        draw = self.draw
        msg = self.any_valid()
        event = msg["event"]
        choices = ["streamSid", "sequenceNumber", event]
        if event == "media":
            choices += ["media.timestamp", "media.chunk", "media.track"]
        elif event == "mark":
            choices += ["mark.name"]
        elif event == "dtmf":
            choices += ["dtmf.digit"]
        where = draw(st.sampled_from(choices))
        if where == "sequenceNumber":
            msg[where] = draw(_not_a_number)
        elif where == "streamSid":
            if draw(st.booleans()):
                del msg[where]
            else:
                msg[where] = draw(_not_a_string)
        elif where == event:
            # Not an object; for ``stop`` also not empty (a missing ``stop`` body is allowed).
            msg[event] = draw(st.one_of(st.integers(1), st.text(min_size=1, max_size=4),
                                        st.lists(st.integers(), min_size=1, max_size=2))
                              | (st.none() | st.just(0) | st.just("") if event != "stop" else st.nothing()))
        else:
            body, key = where.split(".")
            if key == "digit":
                msg[body][key] = draw(st.one_of(_not_a_string, st.text(max_size=3).filter(
                    lambda d: d not in twilio.DTMF_DIGITS or not d)))
            elif key in ("name", "track"):
                msg[body][key] = draw(_not_a_string.filter(lambda v: v is not None)) \
                    if key == "track" else draw(_not_a_string)
            elif draw(st.booleans()) and key == "timestamp":
                del msg[body][key]
            else:
                msg[body][key] = draw(_not_a_number)
        return msg

    def random_shape(self) -> dict[str, Any]:
        """Any JSON object near the protocol's shapes; what it becomes is not known."""
        draw = self.draw
        msg: dict[str, Any] = draw(st.dictionaries(st.text(max_size=8), _json, max_size=3))
        msg["event"] = draw(st.one_of(
            st.sampled_from(["connected", "start", "media", "mark", "dtmf", "clear"]), _json))
        if draw(st.booleans()):
            msg["streamSid"] = draw(st.one_of(st.just(SID), _json))
        msg.pop("sequenceNumber", None)
        body = draw(st.sampled_from(["start", "media", "mark", "dtmf", "stop"]))
        msg[body] = draw(_json | _near_bodies)
        return msg

    # -- the call

    def build(self) -> Script:
        draw, script = self.draw, self.script
        self.add(twilio.connected())
        for _ in range(draw(st.integers(0, 3))):  # before start: nothing is a call yet
            if draw(st.booleans()):
                self.add(self.any_valid(draw(st.sampled_from([SID, "MZ-other"]))), "unexpected")
            else:
                frame, kind = self.junk()
                self.add(frame, kind)
        script.start_index = len(script.frames)
        self.add(self.start())
        self.accepted = self.seq
        for _ in range(draw(st.integers(0, 30))):
            self.body_frame()
        script.sentinel_index = len(script.frames)
        script.audio.append(SENTINEL)
        self.add(self.media(SENTINEL))
        if draw(st.booleans()):
            self.add(self.stop())
            for _ in range(draw(st.integers(0, 3))):  # after stop: never read
                self.add(self.any_valid())
        return script

    def body_frame(self) -> None:
        draw, script = self.draw, self.script
        what = draw(st.sampled_from(["audio", "audio", "mark", "dtmf", "junk", "wrong_stream",
                                     "out_of_order", "unexpected", "random"]
                                    if self.random_shapes else
                                    ["audio", "audio", "mark", "dtmf", "junk", "wrong_stream",
                                     "out_of_order", "unexpected"]))
        if what == "audio":
            payload = draw(_audio)
            script.audio.append(payload)
            self.add(self.media(payload))
            self.accepted = self.seq
        elif what == "mark":
            self.add(self.mark(draw(_mark_names)))
            self.accepted = self.seq
        elif what == "dtmf":
            digit = draw(st.sampled_from(twilio.DTMF_DIGITS))
            script.digits.append(digit)
            self.add(self.dtmf(digit))
            self.accepted = self.seq
        elif what == "junk":
            frame, kind = self.junk()
            self.add(frame, kind)
        elif what == "wrong_stream":
            sid = draw(_other_sid)
            self.add(draw(st.sampled_from([self.any_valid, self.start]))(sid), "wrong_stream")
        elif what == "out_of_order":
            self.add(self.media(draw(_audio), seq=draw(st.integers(1, self.accepted))), "out_of_order")
        elif what == "unexpected":  # a second connected, or a second start (numbered: taken in order)
            if draw(st.booleans()):
                self.add(twilio.connected(), "unexpected")
            else:
                self.add(self.start(), "unexpected")
                self.accepted = self.seq
        else:
            self.add(self.random_shape())


@st.composite
def scripts(draw: Any, random_shapes: bool = False) -> Script:
    return _Builder(draw, random_shapes).build()


@st.composite
def single_frames(draw: Any) -> Frame:
    """One frame for the parser alone: valid, broken in one known way, a random
    shape, or any text or bytes at all (non-UTF-8, lone surrogates included)."""
    builder = _Builder(draw, random_shapes=True)
    which = draw(st.integers(0, 4))
    if which == 0:
        frame: Any = builder.any_valid()
    elif which == 1:
        frame = builder.junk()[0]
    elif which == 2:
        frame = builder.random_shape()
    elif which == 3:
        frame = draw(st.text(st.characters(exclude_categories=()), max_size=200))
    else:
        frame = draw(st.binary(max_size=200))
    return twilio.encode(frame) if isinstance(frame, dict) else frame


def script_for(body: list[dict[str, Any] | Frame], *, kinds: dict[str, int] | None = None,
               audio: list[bytes] | None = None, digits: list[str] | None = None,
               stop: bool = True) -> Script:
    """A hand-written case (for regression tests): ``connected``, ``start`` numbered 1,
    ``body`` (number yours from 2), the sentinel numbered 10,000, then ``stop``."""
    token = TOKENS.mint(CALL, AGENT, 600)
    frames: list[Frame] = [
        twilio.encode(twilio.connected()),
        twilio.encode(twilio.start(stream_sid=SID, account_sid=ACCOUNT, call_sid=CALL,
                                   custom_parameters={"token": token, "agent": AGENT})),
        *(twilio.encode(f) if isinstance(f, dict) else f for f in body),
        twilio.encode(twilio.media(stream_sid=SID, sequence_number=10_000, chunk=10_000,
                                   timestamp=200_000, payload=SENTINEL)),
    ]
    if stop:
        frames.append(twilio.encode(twilio.stop(stream_sid=SID, sequence_number=10_001,
                                                account_sid=ACCOUNT, call_sid=CALL)))
    return Script(frames=frames, start_index=1, sentinel_index=len(body) + 2,
                  kinds=Counter(kinds or {}), audio=[*(audio or []), SENTINEL],
                  digits=list(digits or []))
