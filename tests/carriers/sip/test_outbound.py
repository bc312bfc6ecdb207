"""Calls we place over SIP, against the simulated callee over real UDP on 127.0.0.1.

The callee (``testing/sip_callee.py``) is written from the RFCs with its own
message code and checks our digest answer with ``hashlib``; the platform is a
fake host that records what the carrier hands it.
"""

from __future__ import annotations

import asyncio

import pytest

from agentplatform.carriers.base import CallAudio, InboundAudio, StreamStopped
from agentplatform.carriers.dialing import AnsweringMachine, MachineDetection, OutboundRequest
from agentplatform.carriers.sip.outbound import OutboundCall, OutboundConfig
from agentplatform.carriers.sip.server import SipConfig, parse_peers, rtp_media_opener, serve
from agentplatform.errors import CarrierError
from agentplatform.testing.sip_callee import SipCallee

LOOP = "127.0.0.1"


class DialHost:
    """The platform's side: takes the answered call, or hears why it never was."""

    def __init__(self, *, hang_up_after_s: float | None = None) -> None:
        self.calls: list[CallAudio] = []
        self.events: list[object] = []
        self.ended: list[tuple[str, str, str]] = []
        self.progress: list[tuple[str, str]] = []
        self.handled = asyncio.Event()
        self.finished = asyncio.Event()
        self.dial_over = asyncio.Event()
        self.hang_up_after_s = hang_up_after_s

    async def lookup_agent(self, number: str) -> str | None:
        return None

    async def admit(self, *args) -> str | None:
        return None

    async def handle_call(self, audio: CallAudio) -> None:
        self.calls.append(audio)
        self.handled.set()
        try:
            async with asyncio.timeout(self.hang_up_after_s or 30):
                async for event in audio.events():
                    self.events.append(event)
                    if isinstance(event, StreamStopped):
                        return
        except TimeoutError:
            await audio.hang_up()
        finally:
            self.finished.set()

    def call_finished(self, call_id: str) -> None: ...

    def count_malformed(self, kind: str, n: int = 1) -> None: ...

    def dial_progress(self, request: OutboundRequest, status: str = "ringing",
                      carrier_call_id: str = "") -> None:
        self.progress.append((status, carrier_call_id))

    def dial_ended(self, request: OutboundRequest, reason: str, detail: str = "") -> None:
        self.ended.append((request.call_id, reason, detail))
        self.dial_over.set()


def request(number: str = "15550100", **kwargs) -> OutboundRequest:
    return OutboundRequest(call_id="c0ffee", agent="reminder", to_number=number,
                           from_number="15550999", carrier="sip", **kwargs)


@pytest.fixture
async def server():
    # An empty allow-list: the callee's BYE is taken only because we dialed that address.
    config = SipConfig((LOOP, 0), LOOP, tuple(parse_peers("")), range(42000, 42200), 30)
    host = DialHost(hang_up_after_s=None)
    transport, sip_server = await serve(config, host)
    yield sip_server, host, config
    await sip_server.stop()
    transport.close()


async def dial(server, callee: SipCallee, *, ring_timeout_s: float = 5.0, username: str = "agent",
               password: str = "secret", **kwargs) -> OutboundCall:
    sip_server, host, config = server
    settings = OutboundConfig(f"sip:{{number}}@{callee.address}", username, password, "", ring_timeout_s)
    attempt = OutboundCall(request(**kwargs), config=settings, signaling=sip_server, host=host,
                           open_media=rtp_media_opener(config))
    await attempt.start()
    return attempt


async def test_answered_call_is_handed_over_with_the_request_and_the_sip_call_id(server):
    _, host, _ = server
    async with SipCallee(greeting=b"\x00\x10" * 8000) as callee:
        attempt = await dial(server, callee)
        async with asyncio.timeout(5):
            await host.handled.wait()
        call = host.calls[0]
        assert call.info.carrier == "sip" and call.info.call_id == attempt.call_id
        assert call.info.outbound is not None and call.info.outbound.call_id == "c0ffee"
        assert call.info.to_number == "15550100" and call.info.agent == "reminder"
        assert callee.invites[0].get("call-id") == attempt.call_id
        assert callee.invites[0].uri == f"sip:15550100@{callee.address}"
        await callee.wait_greeting_sent(5)
        await callee.hang_up()  # the callee's BYE ends the call
        async with asyncio.timeout(5):
            await host.finished.wait()
    assert isinstance(host.events[-1], StreamStopped) and host.events[-1].reason == ""
    assert any(isinstance(e, InboundAudio) for e in host.events)
    assert host.ended == []  # a call that was answered is never reported as a dial outcome
    assert callee.acks_for_2xx >= 1 and callee.protocol_errors == []


async def test_our_hang_up_sends_bye_to_the_callee(server):
    _, host, _ = server
    host.hang_up_after_s = 0.5
    async with SipCallee() as callee:
        await dial(server, callee)
        async with asyncio.timeout(5):
            await callee.bye_received.wait()
    assert callee.protocol_errors == []


async def test_a_lost_ack_is_sent_again_for_the_retransmitted_200(server):
    sip_server, _, _ = server
    sent = sip_server.send_to
    dropped: list[bytes] = []

    def lose_first_ack(data: bytes, addr) -> None:
        if data.startswith(b"ACK ") and not dropped:
            dropped.append(data)
            return
        sent(data, addr)

    sip_server.send_to = lose_first_ack
    async with SipCallee() as callee:
        await dial(server, callee)
        async with asyncio.timeout(5):
            await callee.answered.wait()
            while callee.acks_for_2xx == 0:
                await asyncio.sleep(0.05)
    assert dropped and callee.oks_sent >= 2  # the 200 came again and this time was ACKed


@pytest.mark.parametrize(("challenge", "header"), [(401, "authorization"), (407, "proxy-authorization")])
@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
async def test_a_digest_challenge_is_answered_once_with_cseq_plus_one(server, challenge, header, algorithm):
    _, host, _ = server
    async with SipCallee(challenge=challenge, algorithm=algorithm) as callee:
        await dial(server, callee)
        async with asyncio.timeout(5):
            await host.handled.wait()
    first, second = callee.invites
    assert not first.get(header) and second.get(header)
    assert second.cseq[0] == first.cseq[0] + 1 and second.get("call-id") == first.get("call-id")
    assert callee.auth_failures == []


async def test_wrong_credentials_end_the_attempt_failed_without_a_second_retry(server):
    _, host, _ = server
    async with SipCallee(challenge=401, password="other") as callee:
        await dial(server, callee)
        async with asyncio.timeout(5):
            await host.dial_over.wait()
    assert host.ended[0][1] == "failed" and "403" in host.ended[0][2]
    assert len(callee.invites) == 2 and not host.calls


async def test_a_challenge_without_credentials_fails_closed(server):
    _, host, _ = server
    async with SipCallee(challenge=407) as callee:
        await dial(server, callee, username="")
        async with asyncio.timeout(5):
            await host.dial_over.wait()
    assert host.ended[0][1] == "failed" and "SIP_USERNAME" in host.ended[0][2]
    assert len(callee.invites) == 1


async def test_busy_callee_ends_the_attempt_busy(server):
    _, host, _ = server
    async with SipCallee(answer="busy") as callee:
        await dial(server, callee)
        async with asyncio.timeout(5):
            await host.dial_over.wait()
    assert host.ended == [("c0ffee", "busy", "486 Busy Here")] and not host.calls
    assert host.progress == [("ringing", callee.invites[0].get("call-id"))]


async def test_other_failures_end_the_attempt_failed_with_the_status(server):
    _, host, _ = server
    async with SipCallee(answer="fail", fail_status=503) as callee:
        await dial(server, callee)
        async with asyncio.timeout(5):
            await host.dial_over.wait()
    assert host.ended[0][1] == "failed" and host.ended[0][2].startswith("503")


async def test_no_answer_is_cancelled_at_the_ring_timeout(server):
    _, host, _ = server
    async with SipCallee(answer="never") as callee:
        await dial(server, callee, ring_timeout_s=1.0)
        async with asyncio.timeout(5):
            await host.dial_over.wait()
    assert [r.method for r in callee.requests if r.is_request].count("CANCEL") == 1
    assert host.ended[0][1] == "no_answer" and "487" in host.ended[0][2]
    assert not host.calls


async def test_a_200_crossing_our_cancel_is_acked_and_hung_up(server):
    _, host, _ = server
    async with SipCallee(answer="answer_despite_cancel") as callee:
        await dial(server, callee, ring_timeout_s=1.0)
        async with asyncio.timeout(5):
            await host.dial_over.wait()
            await callee.bye_received.wait()
    assert callee.acks_for_2xx >= 1
    assert host.ended[0][1] == "no_answer" and not host.calls


async def test_machine_detection_sends_the_verdict_among_the_call_events(server):
    _, host, _ = server
    import numpy as np
    t = np.arange(8000) / 8000
    beep = (8000 * np.sin(2 * np.pi * 1000 * t[:3200])).astype("<i2").tobytes()
    voice = (6000 * np.sign(np.sin(2 * np.pi * 150 * t)) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t)))
    greeting = np.tile(voice, 3).astype("<i2").tobytes() + bytes(3200) + beep
    host.hang_up_after_s = 6
    async with SipCallee(greeting=greeting) as callee:
        await dial(server, callee, machine_detection=MachineDetection.LEAVE_MESSAGE)
        async with asyncio.timeout(10):
            await host.finished.wait()
    verdicts = [(e.verdict, e.greeting_ended, e.detail) for e in host.events
                if isinstance(e, AnsweringMachine)]
    assert verdicts == [("machine", False, "long_greeting"), ("machine", True, "beep")]


async def test_send_dtmf_reaches_the_callee_as_rfc4733_events(server):
    _, host, _ = server
    async with SipCallee() as callee:
        await dial(server, callee)
        async with asyncio.timeout(5):
            await host.handled.wait()
            await callee.answered.wait()
            while callee.acks_for_2xx == 0:
                await asyncio.sleep(0.02)
        await host.calls[0].send_dtmf("1w#")
        await asyncio.sleep(0.2)
        assert callee.digits_heard() == "1#"
        await host.calls[0].hang_up()


async def test_a_number_that_is_not_one_is_refused_before_dialing(server):
    sip_server, host, config = server
    settings = OutboundConfig("sip:{number}@127.0.0.1:9", "", "", "", 5)
    with pytest.raises(CarrierError, match="not a number"):
        OutboundCall(request("1>;x"), config=settings, signaling=sip_server, host=host,
                     open_media=rtp_media_opener(config))


@pytest.mark.parametrize(("template", "problem"), [
    ("", "not set"), ("sip:trunk.example", "no {number}"), ("http://{number}", "not a SIP URI"),
])
def test_settings_that_cannot_place_calls_say_why(template, problem):
    assert problem in (OutboundConfig(template, "", "", "", 30).problem() or "")


async def test_an_abandoned_ringing_call_is_cancelled_and_reported_server_shutdown(server):
    _, host, _ = server
    async with SipCallee(answer="never") as callee:
        attempt = await dial(server, callee, ring_timeout_s=30)
        async with asyncio.timeout(5):
            while not attempt.ringing:
                await asyncio.sleep(0.02)
        attempt.abandon("shutting down")
        async with asyncio.timeout(5):
            await callee.cancelled.wait()
    assert host.ended == [("c0ffee", "server_shutdown", "shutting down")] and not attempt.pending
