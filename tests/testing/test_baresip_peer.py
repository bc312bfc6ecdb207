"""The baresip harness, proven against sipp before it calls our own server: baresip
dials a sipp UAS that echoes RTP, so what baresip records as heard is its own
microphone back; and it takes a REFER to a second sipp, which sipp checks end to end."""

from __future__ import annotations

import audioop
import math
import struct
from pathlib import Path

import pytest

from agentplatform.testing.baresip_peer import BaresipPeer, wav_bytes
from agentplatform.testing.sipp_peer import SippPeer
from tests.sip_peers import require_program

SCENARIOS = Path(__file__).parent / "sipp"
TONE_HZ = 440
TONE = b"".join(struct.pack("<h", int(6000 * math.sin(2 * math.pi * TONE_HZ * i / 8000))) for i in range(16000))
ECHO = ["-rtp_echo", "-key", "pt", "0", "-key", "codec", "PCMU", "-key", "dtmf", "101"]


@pytest.fixture(autouse=True)
def _peers() -> None:
    require_program("sipp")
    require_program("baresip")


def _pitch(pcm: bytes) -> float:
    """Zero crossings per second / 2: the frequency of a clean tone."""
    samples = struct.unpack(f"<{len(pcm) // 2}h", pcm)
    crossings = sum(1 for a, b in zip(samples, samples[1:], strict=False) if (a < 0) != (b < 0))
    return crossings / 2 / (len(samples) / 8000)


async def test_baresip_hears_its_microphone_echoed_by_sipp() -> None:
    async with SippPeer(["-sf", str(SCENARIOS / "uas_answer_echo.xml"), *ECHO]) as uas:
        peer = BaresipPeer(microphone=wav_bytes(TONE))
        try:
            result = await peer.call(f"sip:+15550100@{uas.address}", seconds=5)
        finally:
            peer.close()
    assert uas.result is not None and uas.result.ok, uas.result.errors  # baresip hung up with BYE
    assert "Call established" in result.log
    heard = result.heard_pcm()
    voiced = b"".join(heard[i:i + 320] for i in range(0, len(heard), 320) if audioop.rms(heard[i:i + 320], 2) > 1000)
    assert len(voiced) >= 1.5 * 16000, f"heard only {len(voiced) / 16000:.2f} s of the tone"
    assert abs(audioop.rms(voiced, 2) - 6000 / math.sqrt(2)) < 300
    assert abs(_pitch(voiced) - TONE_HZ) < 15


async def test_baresip_takes_a_refer_and_calls_the_target() -> None:
    async with SippPeer(["-sf", str(SCENARIOS / "uas_answer_echo.xml"), *ECHO]) as target:
        async with SippPeer(["-sf", str(SCENARIOS / "uas_answer_then_refer.xml"),
                             "-key", "refer_target", target.address]) as transferor:
            peer = BaresipPeer(microphone=wav_bytes(TONE))
            try:
                result = await peer.call(f"sip:+15550100@{transferor.address}", seconds=6)
            finally:
                peer.close()
            # 202, NOTIFY 100 and NOTIFY 200 (sipfrag, terminated), then our BYE answered:
            assert (await transferor.wait()).ok, transferor.result and transferor.result.errors
        assert (await target.wait()).ok, target.result and target.result.errors
    assert f"Call established: sip:+15550199@{target.address}" in result.log
