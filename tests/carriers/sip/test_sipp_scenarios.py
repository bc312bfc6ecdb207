"""The sipp UAC scenarios our SIP server is tested with, first run against sipp UAS
scenarios: a scenario that cannot complete against an independent peer would blame
the server for its own mistakes. Each pair must finish with both sides' exit 0."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agentplatform.testing.sipp_peer import SippPeer
from tests.sip_peers import require_program

UAC = Path(__file__).parent / "sipp"
UAS = Path(__file__).parents[2] / "testing" / "sipp"
ECHO = ["-rtp_echo", "-key", "pt", "0", "-key", "codec", "PCMU", "-key", "dtmf", "101"]
CALLER_AUDIO = bytes(range(0, 256, 2)) * 40  # 640 ms of raw μ-law


@pytest.fixture(autouse=True)
def _sipp() -> None:
    require_program("sipp")


@pytest.mark.parametrize(("uac", "uas", "uas_args"), [
    ("uac_call_rtp_stream.xml", "uas_answer_echo.xml", ECHO),
    ("uac_cancel.xml", "uas_trying_then_cancel.xml", []),
    ("uac_options.xml", "uas_options.xml", []),
    ("uac_wait_for_bye.xml", "uas_answer_then_bye.xml", []),
    ("uac_answer_refer.xml", "uas_answer_then_refer.xml", ["-key", "refer_target", "127.0.0.1:5999"]),
])
async def test_uac_scenario_completes_against_a_sipp_uas(uac: str, uas: str, uas_args: list[str]) -> None:
    async with SippPeer(["-sf", str(UAS / uas), *uas_args]) as server:
        client = SippPeer(["-sf", str(UAC / uac), "-s", "+15550100", "-d", "500"],
                          remote=server.address, files={"caller.ulaw": CALLER_AUDIO})
        async with client:
            result = await client.wait()
        server_result = await server.wait()
    assert result.ok, result.errors or result.output[-2000:]
    assert server_result.ok, server_result.errors or server_result.output[-2000:]


def test_every_uac_scenario_is_checked_here() -> None:
    checked = {"uac_call_rtp_stream.xml", "uac_cancel.xml", "uac_options.xml",
               "uac_wait_for_bye.xml", "uac_answer_refer.xml"}
    # The lossy scenario is checked against our server only (tests/e2e/test_sip_call.py):
    # sipp as a UAS gives up on the call when an ACK is lost and the BYE comes first,
    # or when its own 200 retransmissions run out, so against sipp it fails at random.
    lossy = {"uac_retransmissions.xml"}
    assert {p.name for p in UAC.glob("uac_*.xml")} == checked | lossy
    assert asyncio  # the scenarios run under the event loop above
