"""The SIP server over real UDP on 127.0.0.1, driven by a tiny hand-written UAC.

The UAC writes its datagrams as text and reads responses with its own few lines,
never through ``messages.py``: a misreading shared by both sides would pass.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest

from agentplatform.carriers.base import CallAudio, InboundAudio, MarkPlayed, StreamStopped
from agentplatform.carriers.sip.server import SipConfig, parse_peers, serve

from .test_transactions import FakeTimers

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
    def mark(self, name):  # nothing queued: played at once
        self._q.put_nowait(MarkPlayed(name))
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
def timers():
    return None  # the event loop's own clock


@pytest.fixture
async def rig(timers):
    host = FakeHost({"+15550002": "receptionist"})
    media: list[FakeMedia] = []

    async def open_media(codec, dtmf, remote):
        media.append(FakeMedia())
        media[-1].opened_with = (codec, dtmf, remote)
        return media[-1]

    config = SipConfig((LOOP, 0), LOOP, tuple(parse_peers("127.0.0.0/8")), range(41000, 41100), 30)
    transport, server = await serve(config, host, open_media=open_media, timers=timers)
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


async def live_call(rig, call_id: str) -> tuple[Reply, str, CallAudio]:
    server, host, uac, media, addr = rig
    ok = await invite_and_answer(uac, addr, call_id)
    to_tag = ok.h("To").split("tag=")[1]
    uac.send(ack(uac, call_id, to_tag), addr)
    for _ in range(200):
        if host.handled:
            break
        await asyncio.sleep(0.01)
    return ok, to_tag, host.handled[-1]


def answer(uac: Uac, req: Reply, status: int, reason: str = "OK") -> str:
    """The UAC's response to a request the server sent it."""
    lines = [f"SIP/2.0 {status} {reason}"]
    for name in ("via", "from", "to", "call-id", "cseq"):
        for value in req.headers.get(name, []):
            lines.append(f"{name.title()}: {value}")
    lines.append("Content-Length: 0")
    return "\r\n".join(lines) + "\r\n\r\n"


async def test_hang_up_sends_our_bye_in_the_dialog(rig):
    server, host, uac, media, addr = rig
    _, to_tag, audio = await live_call(rig, "hang-1")
    await asyncio.wait_for(audio.hang_up(), 5)
    bye = await uac.next()
    assert bye.method == "BYE" and f"tag={to_tag}" in bye.h("From")
    assert bye.h("Call-ID") == "hang-1" and "tag=uac1" in bye.h("To")
    uac.send(answer(uac, bye, 200), addr)
    assert "hang-1" not in server.calls


async def test_transfer_refers_then_byes_when_notify_says_200(rig):
    server, host, uac, media, addr = rig
    _, to_tag, audio = await live_call(rig, "xfer-1")
    task = asyncio.ensure_future(audio.transfer("+15557770000"))
    refer = await uac.next()
    assert refer.method == "REFER"
    assert refer.h("Refer-To") == f"<sip:+15557770000@{LOOP}:{uac.port}>"
    assert refer.h("Referred-By")
    uac.send(answer(uac, refer, 202, "Accepted"), addr)
    notify = request(uac, "NOTIFY", call_id="xfer-1", cseq=2, to_tag=to_tag).replace(
        "Content-Length: 0", "Event: refer\r\nSubscription-State: terminated\r\n"
        "Content-Type: message/sipfrag\r\nContent-Length: 16") + "SIP/2.0 200 OK\r\n"
    uac.send(notify, addr)
    assert (await uac.until(200)).h("CSeq") == "2 NOTIFY"
    await asyncio.wait_for(task, 5)
    bye = await uac.next()
    assert bye.method == "BYE"


async def test_failed_transfer_raises_and_keeps_the_caller(rig):
    from agentplatform.carriers.sip.call import TransferFailed
    server, host, uac, media, addr = rig
    _, to_tag, audio = await live_call(rig, "xfer-2")
    task = asyncio.ensure_future(audio.transfer("+15557770000"))
    refer = await uac.next()
    uac.send(answer(uac, refer, 202, "Accepted"), addr)
    notify = request(uac, "NOTIFY", call_id="xfer-2", cseq=2, to_tag=to_tag).replace(
        "Content-Length: 0", "Event: refer\r\nContent-Type: message/sipfrag\r\n"
        "Content-Length: 22") + "SIP/2.0 486 Busy Here\r\n"
    uac.send(notify, addr)
    with pytest.raises(TransferFailed, match="486"):
        await asyncio.wait_for(task, 5)
    assert "xfer-2" in server.calls  # no BYE: the caller is still with us
    await asyncio.sleep(0.05)
    assert all(r.method != "BYE" for r in [uac.inbox.get_nowait() for _ in range(uac.inbox.qsize())])


async def test_media_timeout_sends_bye_and_says_media_timeout(rig):
    server, host, uac, media, addr = rig
    _, _, audio = await live_call(rig, "quiet")
    media[-1].timed_out.set()
    bye = await uac.next()
    assert bye.method == "BYE"
    await asyncio.wait_for(host.ended.wait(), 5)
    stopped = host.events["quiet"][-1]
    assert isinstance(stopped, StreamStopped) and stopped.reason == "media_timeout"
    assert audio.end_reason == "media_timeout"


async def test_hold_reinvite_is_answered_recvonly(rig):
    server, host, uac, media, addr = rig
    _, to_tag, _ = await live_call(rig, "hold")
    held = OFFER.replace("a=sendrecv", "a=sendonly").replace("o=- 1 1", "o=- 1 2")
    uac.send(request(uac, "INVITE", call_id="hold", cseq=2, to_tag=to_tag, body=held), addr)
    ok = await uac.until(200)
    assert ok.h("CSeq") == "2 INVITE" and "a=recvonly" in ok.body.decode()
    assert " 2 IN IP4" in ok.body.decode()  # our SDP changed: a new version


async def test_session_refresh_is_answered_with_the_same_sdp(rig):
    server, host, uac, media, addr = rig
    ok, to_tag, _ = await live_call(rig, "refresh")
    uac.send(request(uac, "INVITE", call_id="refresh", cseq=2, to_tag=to_tag, body=OFFER), addr)
    again = await uac.until(200)
    assert again.body == ok.body


@pytest.mark.parametrize("timers", [FakeTimers()])
async def test_200_resent_until_ack_and_without_ack_bye_at_32_s(rig, timers):
    server, host, uac, media, addr = rig
    await invite_and_answer(uac, addr, "no-ack")
    for _ in range(7):  # 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5
        timers.advance(4)
    resent = [await uac.next() for _ in range(7)]
    assert {r.status for r in resent} == {200}
    timers.advance(13)  # 32 s: no ACK came
    while (reply := await uac.next()).status == 200:
        pass
    assert reply.method == "BYE"
    assert host.handled == [] and host.finished == ["no-ack"]
    assert "no-ack" not in server.calls


@pytest.mark.parametrize("timers", [FakeTimers()])
async def test_ack_stops_the_200_resends(rig, timers):
    server, host, uac, media, addr = rig
    ok = await invite_and_answer(uac, addr, "acked")
    timers.advance(0.6)
    assert (await uac.next()).status == 200
    uac.send(ack(uac, "acked", ok.h("To").split("tag=")[1]), addr)
    for _ in range(100):
        if host.handled:
            break
        await asyncio.sleep(0.01)
    timers.advance(40)
    await asyncio.sleep(0.05)
    assert uac.inbox.empty() and host.handled


def _context(**env):
    from agentplatform.carriers.plugin import CarrierContext
    from agentplatform.config import Settings
    settings = Settings(**env)
    return CarrierContext(carrier="sip", settings=settings, single_use=None,
                          services=lambda: FakeHost({}))


def test_sip_carrier_is_off_without_sip_listen():
    from agentplatform.carriers.sip.plugin import SipCarrier
    from agentplatform.config import Settings
    assert not SipCarrier.enabled(Settings(sip_listen=""))
    assert SipCarrier.enabled(Settings(sip_listen="127.0.0.1:5080"))


@pytest.mark.parametrize(("env", "named"), [
    ({"sip_listen": "nowhere"}, "SIP_LISTEN"),
    ({"sip_listen": "127.0.0.1:5080", "sip_allowed_peers": "10.0.0.0/8, bogus"}, "SIP_ALLOWED_PEERS"),
    ({"sip_listen": "127.0.0.1:5080", "sip_rtp_ports": "3000"}, "SIP_RTP_PORTS"),
])
def test_bad_sip_settings_stop_start_up_naming_the_setting(env, named):
    from agentplatform.carriers.sip.plugin import SipCarrier
    with pytest.raises(ValueError, match=named):
        SipCarrier(_context(**env))


async def test_sip_carrier_listens_between_start_and_stop():
    from agentplatform.carriers.sip.plugin import SipCarrier
    carrier = SipCarrier(_context(sip_listen=f"{LOOP}:0", sip_allowed_peers="127.0.0.1/32"))
    await carrier.start()
    loop = asyncio.get_running_loop()
    _, uac = await loop.create_datagram_endpoint(Uac, local_addr=(LOOP, 0))
    try:
        uac.send(request(uac, "OPTIONS", call_id="plug"), (LOOP, carrier.server.via[1]))
        assert (await uac.next()).status == 200
    finally:
        await carrier.stop()
        uac.transport.close()


class RtpPeer(asyncio.DatagramProtocol):
    """The caller's RTP: hand-built 12-byte headers, PCMU."""

    def __init__(self) -> None:
        self.packets: asyncio.Queue[bytes] = asyncio.Queue()

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.port = transport.get_extra_info("sockname")[1]

    def datagram_received(self, data, addr) -> None:
        self.packets.put_nowait(data)

    def send(self, seq: int, payload: bytes, to: tuple[str, int]) -> None:
        header = bytes([0x80, 0x00]) + seq.to_bytes(2, "big") + (seq * 160).to_bytes(4, "big") \
            + (0x1234).to_bytes(4, "big")
        self.transport.sendto(header + payload, to)


async def test_call_end_to_end_over_udp_with_real_rtp():
    host = FakeHost({"+15550002": "receptionist"})
    heard: list[bytes] = []

    async def handle_call(audio: CallAudio) -> None:
        host.handled.append(audio)
        async for event in audio.events():
            if isinstance(event, InboundAudio):
                heard.append(event.audio)
                if len(heard) == 3:
                    await audio.send_audio(b"\x11" * 480)
            if isinstance(event, StreamStopped):
                break
        host.ended.set()
    host.handle_call = handle_call
    config = SipConfig((LOOP, 0), LOOP, tuple(parse_peers("127.0.0.1/32")), range(47000, 47999), 30)
    _, server = await serve(config, host)
    loop = asyncio.get_running_loop()
    _, uac = await loop.create_datagram_endpoint(Uac, local_addr=(LOOP, 0))
    _, rtp = await loop.create_datagram_endpoint(RtpPeer, local_addr=(LOOP, 0))
    addr = (LOOP, server.via[1])
    try:
        offer = OFFER.replace("m=audio 40000", f"m=audio {rtp.port}")
        uac.send(request(uac, "INVITE", call_id="e2e", body=offer), addr)
        ok = await uac.until(200)
        our_port = int(next(line for line in ok.body.decode().splitlines()
                            if line.startswith("m=audio")).split()[1])
        to_tag = ok.h("To").split("tag=")[1]
        uac.send(ack(uac, "e2e", to_tag), addr)
        for seq in range(1, 11):
            rtp.send(seq, b"\x22" * 160, (LOOP, our_port))
            await asyncio.sleep(0.02)
        ours = []
        while len(ours) < 30 and not any(p[12:] == b"\x11" * 160 for p in ours):
            ours.append(await asyncio.wait_for(rtp.packets.get(), 5))
        assert heard and heard[0] == b"\x22" * 160
        assert {p[1] & 0x7F for p in ours} == {0}  # PCMU, as answered
        assert any(p[12:] == b"\x11" * 160 for p in ours)  # the agent's audio reached the caller
        uac.send(request(uac, "BYE", call_id="e2e", cseq=2, to_tag=to_tag), addr)
        assert (await uac.until(200)).h("CSeq") == "2 BYE"
        await asyncio.wait_for(host.ended.wait(), 5)
    finally:
        await server.stop()
        uac.transport.close()
        rtp.transport.close()
