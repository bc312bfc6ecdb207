"""``make bench`` for the SIP trunk: N simulated SIP callers beside the Twilio run.

Same method as the Twilio bench (server process on one core, callers and the OpenAI
Realtime simulator on the other; each caller talks for 1.2 s, then talks over the
agent after hearing 0.5 s of its answer; server CPU read from ``/proc`` over the same
window), but measured on the caller's clock, because on SIP the server is the pacer
and what matters is what arrives at the far end:

- outbound RTP jitter: |inter-arrival − 20 ms| of consecutive agent packets at the caller;
- inbound to model: the caller sends the first voiced packet of its speech → the
  simulator receives the first voiced audio append of that call (one process, one
  monotonic clock; each caller dials its own agent, so its model connection is known
  by that agent's prompt);
- barge-in: the caller starts talking over the agent → the agent's last voiced packet
  arrives at the caller.

Figures are reported, never asserted.
"""

from __future__ import annotations

import asyncio
import audioop
import bisect
import contextlib
import re
import subprocess
import time
from collections import defaultdict
from pathlib import Path
from typing import Any


from agentplatform.bench import SPEECH, _pct, _rss_mb, measure_steady_state, start_server
from agentplatform.testing.openai_realtime_server import OpenAIRealtimeServer
from agentplatform.testing.sip_caller import SILENT_RMS, ReceivedRtp, SipCaller
from agentplatform.testing.sip_listening import barge_in_ms, jitter_ms, wait_for_voice
from agentplatform.testing.sipp_peer import free_udp_port
from agentplatform.testing.twilio_caller import SIMULATED_AUTH_TOKEN

AGENT = """\
name: bench-sip-{index}
model: openai/gpt-realtime
prompt: Benchmark line {index}.
greeting: Hello, this is the benchmark line.
phone_numbers: ["{number}"]
"""
_LINE = re.compile(r"Benchmark line (\d+)\.")
SILENT_PCMU = audioop.lin2ulaw(b"\0\0" * 160, 2)
MAX_PAIRING_S = 2.0  # a model onset later than this is not the answer to that speech


def sip_number(index: int) -> str:
    return f"+1555556{index:04d}"


def pair_onsets(sent: list[float], heard: list[float]) -> list[float]:
    """For each time the caller began speaking, ms until the model first heard voice
    at or after it; speech the model never heard (within ``MAX_PAIRING_S``) is skipped."""
    heard = sorted(heard)
    out: list[float] = []
    for at in sent:
        i = bisect.bisect_left(heard, at)
        if i < len(heard) and heard[i] - at <= MAX_PAIRING_S:
            out.append((heard[i] - at) * 1000.0)
    return out


class _SendClock:
    """The caller's RTP socket, noting when each stretch of speech starts going out."""

    def __init__(self, transport: Any, onsets: list[float]) -> None:
        self._transport, self.onsets, self._voiced = transport, onsets, False

    def sendto(self, data: bytes, addr: Any) -> None:
        voiced = data[12:] != SILENT_PCMU  # the caller's packets have a bare 12-byte header
        if voiced and not self._voiced:
            self.onsets.append(time.monotonic())
        self._voiced = voiced
        self._transport.sendto(data, addr)

    def close(self) -> None:
        self._transport.close()


class ModelEar:
    """The simulator's ``on_audio``: per bench line, when voiced caller audio began arriving."""

    def __init__(self) -> None:
        self.onsets: dict[int, list[float]] = defaultdict(list)
        self._line: dict[int, int] = {}
        self._voiced: dict[int, bool] = {}

    def __call__(self, connection: Any, audio: bytes, at: float) -> None:
        key = id(connection)
        line = self._line.get(key)
        if line is None:
            found = _LINE.search(str(connection.facts.instructions or ""))
            if found is None:
                return
            line = self._line[key] = int(found.group(1))
        fmt = connection.facts.in_fmt
        pcm = audioop.ulaw2lin(audio, 2) if fmt == "audio/pcmu" else \
            audioop.alaw2lin(audio, 2) if fmt == "audio/pcma" else audio
        voiced = bool(pcm) and audioop.rms(pcm, 2) > SILENT_RMS
        if voiced and not self._voiced.get(key, False):
            self.onsets[line].append(at)
        self._voiced[key] = voiced


class _Line:
    """One SIP caller of the run and what it measured."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.spoke: list[float] = []
        self.received: list[ReceivedRtp] = []
        self.protocol_errors = 0


async def _one_caller(address: str, line: _Line, stop_at: float, delay: float,
                      stats: dict[str, int]) -> None:
    await asyncio.sleep(delay)
    caller = SipCaller(address, to=sip_number(line.index), codecs=("PCMU",))
    try:
        answered = await caller.dial(timeout=15)
    except TimeoutError:
        answered = False
    if not answered:
        stats["failed"] += 1
        await caller.close()
        return
    stats["connected"] += 1
    caller._rtp = _SendClock(caller._rtp, line.spoke)  # noqa: SLF001 - no public send hook yet
    try:
        with contextlib.suppress(TimeoutError):
            await caller.wait_for_audio(10)
        while time.monotonic() < stop_at and not caller.closed_by_server:
            await asyncio.sleep(0.5)  # hear half a second of the answer...
            await caller.say(SPEECH)  # ...then talk over it
            with contextlib.suppress(TimeoutError):
                await wait_for_voice(caller, time.monotonic(), 6)
    finally:
        line.received = caller.received
        line.protocol_errors = len(caller.protocol_errors)
        await caller.hang_up()


def _summary(values: list[float]) -> dict[str, float]:
    return {"count": len(values), "p50": round(_pct(values, 50), 3), "p99": round(_pct(values, 99), 3),
            "max": round(max(values, default=0.0), 3)}


async def run_sip_level(calls: int, seconds: float, workdir: Path) -> dict[str, object]:
    agents = workdir / f"agents-sip-{calls}"
    agents.mkdir(exist_ok=True)
    for i in range(calls):
        (agents / f"bench-sip-{i}.yaml").write_text(AGENT.format(index=i, number=sip_number(i)))
    ear = ModelEar()
    async with OpenAIRealtimeServer(pace=1.0, reply_ms=1500, record=False) as sim:
        sim.on_audio = ear
        sip_port, rtp = free_udp_port(), free_udp_port(even=True, span=2 * calls + 20)
        address = f"127.0.0.1:{sip_port}"
        server = await start_server({
            "AGENTS_DIR": str(agents),
            "DATABASE_URL": f"sqlite:///{workdir / f'bench-sip-{calls}.db'}",
            "TWILIO_AUTH_TOKEN": SIMULATED_AUTH_TOKEN, "PUBLIC_URL": "",
            "SIP_LISTEN": address, "SIP_ALLOWED_PEERS": "127.0.0.1/32",
            "SIP_RTP_PORTS": f"{rtp}-{rtp + 2 * calls + 19}",
            "OPENAI_REALTIME_URL": sim.url, "OPENAI_API_KEY": sim.api_key,
        }, workdir)
        try:
            idle_rss = _rss_mb(server.proc.pid)
            ramp = min(5.0, 0.02 * calls + 1.0)
            stats = {"connected": 0, "failed": 0}
            lines = [_Line(i) for i in range(calls)]
            state = await measure_steady_state(server, seconds, ramp, lambda stop_at: [
                asyncio.create_task(_one_caller(address, line, stop_at,
                                                ramp * line.index / calls, stats))
                for line in lines])
        finally:
            server.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.proc.wait(10)
    jitter: list[float] = []
    inbound: list[float] = []
    barge: list[float] = []
    for line in lines:
        jitter += jitter_ms([r for r in line.received if state.t0 <= r.at <= state.t1])
        spoke = [at for at in line.spoke if state.t0 <= at <= state.t1]
        inbound += pair_onsets(spoke, ear.onsets.get(line.index, []))
        barge += [ms for at in spoke if (ms := barge_in_ms(line.received, at)) is not None]
    return {
        "carrier": "sip", "provider": "openai", "calls": calls,
        "connected": stats["connected"], "failed": stats["failed"],
        **state.server_figures(calls, idle_rss),
        "caller_rtp_jitter_ms": _summary(jitter),
        "caller_inbound_to_model_ms": _summary(inbound),
        "caller_barge_in_ms": _summary(barge),
        "caller_protocol_errors": sum(line.protocol_errors for line in lines),
    }
