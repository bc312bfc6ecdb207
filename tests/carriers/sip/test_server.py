"""The SIP server over real UDP on 127.0.0.1, driven by a tiny hand-written UAC.

The UAC writes its datagrams as text and reads responses with its own few lines,
never through ``messages.py``: a misreading shared by both sides would pass.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest

from agentplatform.carriers.base import CallAudio, InboundAudio, StreamStopped
from agentplatform.carriers.sip.server import SipConfig, parse_peers, serve

LOOP = "127.0.0.1"
OFFER = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 40000 RTP/AVP 8 0 96\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:96 telephone-event/8000\r\na=ptime:20\r\na=sendrecv\r\n"
)


class Reply:
    def __init__(self, data: bytes) -> None:
        head, _, self.body = data.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        self.status = int(lines[0].split(" ")[1]) if lines[0].startswith("SIP/2.0") else 0
        self.method = "" if self.status else lines[0].split(" ")[0]
        self.headers: dict[str, list[str]] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            self.headers.setdefault(name.strip().lower(), []).append(value.strip())

    def h(self, name: str) -> str:
        return self.headers.get(name.lower(), [""])[0]


class Uac(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.inbox: asyncio.Queue[Reply] = asyncio.Queue()
        self.transport = None
        self.port = 0

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.port = transport.get_extra_info("sockname")[1]

    def datagram_received(self, data, addr) -> None:
        self.inbox.put_nowait(Reply(data))

    def send(self, text: str, server: tuple[str, int]) -> None:
        self.transport.sendto(text.encode(), server)

    async def next(self, timeout: float = 5.0) -> Reply:
        return await asyncio.wait_for(self.inbox.get(), timeout)

    async def until(self, status: int, timeout: float = 5.0) -> Reply:
        while True:
            reply = await self.next(timeout)
            if reply.status == status:
                return reply


def request(uac: Uac, method: str, *, number: str = "15550002", call_id: str, cseq: int = 1,
            branch: str | None = None, to_tag: str = "", body: str = "",
            cseq_method: str | None = None) -> str:
    branch = branch or f"z9hG4bK{uuid.uuid4().hex[:12]}"
    to = f"<sip:+{number}@{LOOP}>" + (f";tag={to_tag}" if to_tag else "")
    lines = [
        f"{method} sip:{number}@{LOOP} SIP/2.0",
        f"Via: SIP/2.0/UDP {LOOP}:{uac.port};branch={branch};rport",
        "Max-Forwards: 70",
        f"From: <sip:+15550001@{LOOP}>;tag=uac1",
        f"To: {to}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {cseq_method or method}",
        f"Contact: <sip:caller@{LOOP}:{uac.port}>",
    ]
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body.encode())}")
    return "\r\n".join(lines) + "\r\n\r\n" + body


class FakeMedia:
    def __init__(self) -> None:
        self.local_port = 41234
        self.timed_out = asyncio.Event()
        self.malformed_counts: dict[str, int] = {}
        self.closed = False
        self.played: list[bytes] = []
        self._q: asyncio.Queue = asyncio.Queue()
        self._q.put_nowait(InboundAudio(b"\xff" * 160, 0))

    async def events(self):
        while not self.closed:
            yield await self._q.get()

    def play(self, ulaw): self.played.append(ulaw)
    def mark(self, name): ...
    def clear(self): ...
    def set_hold(self, sending): ...
    def set_remote(self, addr): ...

    async def close(self) -> None:
        self.closed = True


class FakeHost:
    def __init__(self, numbers: dict[str, str]) -> None:
        self.numbers = numbers
        self.handled: list[CallAudio] = []
        self.events: dict[str, list] = {}
        self.finished: list[str] = []
        self.malformed: list[str] = []
        self.looked_up: list[str] = []
        self.ended = asyncio.Event()

    async def lookup_agent(self, number: str) -> str | None:
        self.looked_up.append(number)
        return self.numbers.get(number)

    async def admit(self, call_id, agent, from_number, to_number):
        return None

    async def handle_call(self, audio: CallAudio) -> None:
        self.handled.append(audio)
        got = self.events.setdefault(audio.info.call_id, [])
        async for event in audio.events():
            got.append(event)
        self.ended.set()

    def call_finished(self, call_id: str) -> None:
        self.finished.append(call_id)

    def count_malformed(self, kind: str, n: int = 1) -> None:
        self.malformed.append(kind)


@pytest.fixture
async def rig():
    host = FakeHost({"+15550002": "receptionist"})
    media: list[FakeMedia] = []

    async def open_media(codec, dtmf, remote):
        media.append(FakeMedia())
        media[-1].opened_with = (codec, dtmf, remote)
        return media[-1]

    config = SipConfig((LOOP, 0), LOOP, tuple(parse_peers("127.0.0.0/8")), range(41000, 41100), 30)
    transport, server = await serve(config, host, open_media=open_media)
    loop = asyncio.get_running_loop()
    _, uac = await loop.create_datagram_endpoint(Uac, local_addr=(LOOP, 0))
    yield server, host, uac, media, (LOOP, server.via[1])
    await server.stop()
    uac.transport.close()


async def invite_and_answer(uac: Uac, addr, call_id: str) -> Reply:
    uac.send(request(uac, "INVITE", call_id=call_id, body=OFFER), addr)
    assert (await uac.next()).status == 100
    ok = await uac.next()
    assert ok.status == 200
    return ok


def ack(uac: Uac, call_id: str, to_tag: str) -> str:
    return request(uac, "ACK", call_id=call_id, to_tag=to_tag)


async def test_options_is_answered_200(rig):
    server, host, uac, _, addr = rig
    uac.send(request(uac, "OPTIONS", call_id="opt-1"), addr)
    reply = await uac.next()
    assert reply.status == 200 and "INVITE" in reply.h("Allow")


async def test_invite_from_a_peer_not_allowed_is_403_and_no_call(rig):
    server, host, uac, media, addr = rig
    object.__setattr__(server.config, "allowed_peers", tuple(parse_peers("10.0.0.0/8")))
    uac.send(request(uac, "INVITE", call_id="bad-peer", body=OFFER), addr)
    reply = await uac.next()
    assert reply.status == 403
    assert host.looked_up == [] and media == [] and host.handled == []


async def test_empty_allow_list_refuses_every_invite(rig):
    server, host, uac, media, addr = rig
    object.__setattr__(server.config, "allowed_peers", ())
    uac.send(request(uac, "INVITE", call_id="nobody", body=OFFER), addr)
    assert (await uac.next()).status == 403
    assert media == []


async def test_unknown_number_is_404(rig):
    server, host, uac, media, addr = rig
    uac.send(request(uac, "INVITE", number="19998887777", call_id="unknown", body=OFFER), addr)
    assert (await uac.next()).status == 100
    assert (await uac.next()).status == 404
    assert media == [] and host.looked_up == ["19998887777", "+19998887777"]


async def test_invite_without_sdp_is_refused_488_with_a_warning(rig):
    server, host, uac, media, addr = rig
    uac.send(request(uac, "INVITE", call_id="delayed"), addr)
    assert (await uac.next()).status == 100
    reply = await uac.next()
    assert reply.status == 488 and "without SDP" in reply.h("Warning")
    assert media == []


async def test_invite_gets_100_then_200_with_sdp_answer_and_the_call_runs_after_ack(rig):
    server, host, uac, media, addr = rig
    ok = await invite_and_answer(uac, addr, "call-1")
    assert ok.h("Content-Type") == "application/sdp"
    body = ok.body.decode()
    assert "m=audio 41234 RTP/AVP 0 96" in body  # PCMU preferred, the offer's DTMF type
    assert "a=rtpmap:96 telephone-event/8000" in body
    assert media[0].opened_with[2] == ("127.0.0.1", 40000)
    to_tag = ok.h("To").split("tag=")[1]
    uac.send(ack(uac, "call-1", to_tag), addr)
    for _ in range(100):
        if host.handled:
            break
        await asyncio.sleep(0.01)
    audio = host.handled[0]
    assert audio.info.call_id == "call-1" and audio.info.carrier == "sip"
    assert audio.info.agent == "receptionist" and audio.info.from_number == "+15550001"


async def test_retransmitted_invite_gets_the_same_response(rig):
    server, host, uac, media, addr = rig
    invite = request(uac, "INVITE", call_id="retx", body=OFFER, branch="z9hG4bKretx1")
    uac.send(invite, addr)
    await uac.until(200)
    uac.send(invite, addr)
    again = await uac.until(200)
    assert again.body.startswith(b"v=0") and len(media) == 1  # no second call set up


async def test_cancel_before_our_200_gets_200_and_the_invite_487(rig):
    server, host, uac, media, addr = rig
    gate = asyncio.Event()
    slow_lookup = host.lookup_agent

    async def waiting_lookup(number):
        await gate.wait()
        return await slow_lookup(number)
    host.lookup_agent = waiting_lookup
    uac.send(request(uac, "INVITE", call_id="cancel-me", body=OFFER, branch="z9hG4bKcan1"), addr)
    assert (await uac.next()).status == 100
    uac.send(request(uac, "CANCEL", call_id="cancel-me", branch="z9hG4bKcan1"), addr)
    got = {(await uac.next()).h("CSeq"): None, (await uac.next()).h("CSeq"): None}
    gate.set()
    await asyncio.sleep(0.05)
    assert set(got) == {"1 CANCEL", "1 INVITE"}
    assert media == [] and host.handled == []


async def test_cancel_statuses_are_200_and_487(rig):
    server, host, uac, media, addr = rig
    gate = asyncio.Event()
    orig = host.lookup_agent

    async def waiting_lookup(number):
        await gate.wait()
        return await orig(number)
    host.lookup_agent = waiting_lookup
    uac.send(request(uac, "INVITE", call_id="cancel-2", body=OFFER, branch="z9hG4bKcan2"), addr)
    await uac.until(100)
    uac.send(request(uac, "CANCEL", call_id="cancel-2", branch="z9hG4bKcan2"), addr)
    statuses = sorted([(await uac.next()).status, (await uac.next()).status])
    gate.set()
    assert statuses == [200, 487]


async def test_bye_is_answered_200_and_the_call_sees_stream_stopped(rig):
    server, host, uac, media, addr = rig
    ok = await invite_and_answer(uac, addr, "bye-1")
    to_tag = ok.h("To").split("tag=")[1]
    uac.send(ack(uac, "bye-1", to_tag), addr)
    uac.send(request(uac, "BYE", call_id="bye-1", cseq=2, to_tag=to_tag), addr)
    reply = await uac.until(200)
    assert reply.h("CSeq") == "2 BYE"
    await asyncio.wait_for(host.ended.wait(), 5)
    assert isinstance(host.events["bye-1"][-1], StreamStopped)
    assert media[0].closed


async def test_bye_for_no_call_is_481(rig):
    server, host, uac, media, addr = rig
    uac.send(request(uac, "BYE", call_id="nothing", cseq=2, to_tag="x"), addr)
    assert (await uac.next()).status == 481


async def test_malformed_datagram_is_counted_and_another_call_goes_on(rig):
    server, host, uac, media, addr = rig
    ok = await invite_and_answer(uac, addr, "steady")
    to_tag = ok.h("To").split("tag=")[1]
    uac.send(ack(uac, "steady", to_tag), addr)
    uac.send("NOT SIP AT ALL\r\n\r\n", addr)
    uac.send(request(uac, "BYE", call_id="steady", cseq=2, to_tag=to_tag).replace(
        "CSeq: 2 BYE", "CSeq: two BYE"), addr)
    uac.send(request(uac, "OPTIONS", call_id="after"), addr)
    assert (await uac.until(200)).h("CSeq") == "1 OPTIONS"
    assert server.malformed_counts == {"bad_start_line": 1, "bad_cseq": 1}
    assert host.malformed == ["bad_start_line", "bad_cseq"]
    assert "steady" in server.calls  # the call was not touched
    uac.send(request(uac, "BYE", call_id="steady", cseq=2, to_tag=to_tag), addr)
    assert (await uac.until(200)).h("CSeq") == "2 BYE"
