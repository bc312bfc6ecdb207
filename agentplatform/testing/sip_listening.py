"""What a SIP caller heard, read on its own clock: voiced packets, jitter, barge-in.

``SipCaller`` keeps every RTP packet it received with its arrival time; these pure
functions turn that list into the figures ``agentplatform call --sip`` and the
benchmark report, so both measure the line exactly as the caller's ear gets it.
"""

from __future__ import annotations

import asyncio
import audioop

from agentplatform.testing.sip_caller import SILENT_RMS, ReceivedRtp, SipCaller

PTIME_MS = 20.0
_DECODE = {0: audioop.ulaw2lin, 8: audioop.alaw2lin}


def is_voiced(received: ReceivedRtp) -> bool:
    """A G.711 packet louder than silence (DTMF and unknown payload types are not)."""
    decode = _DECODE.get(received.packet.payload_type)
    return decode is not None and audioop.rms(decode(received.packet.payload, 2), 2) > SILENT_RMS


def voiced_ms(caller: SipCaller) -> float:
    """How much agent audio (not silence) the caller heard."""
    return sum(len(r.packet.payload) / 8 for r in caller.received if is_voiced(r))


async def wait_for_voice(caller: SipCaller, since: float, timeout: float) -> float:
    """Arrival time of the first voiced packet that arrived at or after ``since``.

    ``SipCaller.wait_for_audio`` fires once per call; a turn needs "the next time".
    """
    seen = 0
    async with asyncio.timeout(timeout):
        while True:
            packets = caller.received
            for r in packets[seen:]:
                if r.at >= since and is_voiced(r):
                    return r.at
            seen = len(packets)
            await asyncio.sleep(PTIME_MS / 1000)


def jitter_ms(received: list[ReceivedRtp]) -> list[float]:
    """|inter-arrival − packet duration| for each pair of consecutive audio packets of one
    stream (same SSRC, sequence +1): how far the sender's pacing reached the caller off 20 ms."""
    audio = [r for r in received if r.packet.payload_type in _DECODE]
    out: list[float] = []
    for before, after in zip(audio, audio[1:], strict=False):
        if after.packet.ssrc == before.packet.ssrc and \
                (after.packet.sequence - before.packet.sequence) & 0xFFFF == 1:
            expected = len(before.packet.payload) / 8
            out.append(abs((after.at - before.at) * 1000.0 - expected))
    return out


def barge_in_ms(received: list[ReceivedRtp], spoke_at: float, gap_ms: float = 200.0) -> float | None:
    """Caller starts talking at ``spoke_at`` over the agent → arrival of the agent's last
    voiced packet before the line goes quiet for ``gap_ms``, in ms. ``None`` when the
    agent was not speaking then (nothing voiced in the 100 ms before ``spoke_at``)."""
    voiced = [r.at for r in received if is_voiced(r)]
    if not any(spoke_at - 0.1 <= at < spoke_at for at in voiced):
        return None
    last = spoke_at
    for at in voiced:
        if at < spoke_at:
            continue
        if (at - last) * 1000.0 > gap_ms:
            break
        last = at
    return (last - spoke_at) * 1000.0
