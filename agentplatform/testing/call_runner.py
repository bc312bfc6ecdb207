"""``agentplatform call``: one simulated phone call through the real protocol.

The caller dials the voice webhook, streams its audio as 20 ms Media Streams frames
in real time, and listens. Against a running server (``--url``) or an in-process one;
with ``--simulated-model`` the in-process server talks to the OpenAI Realtime
simulator, so the whole call path can be tried with no key at all.

With ``--sip`` the caller is a SIP trunk instead: an INVITE and RTP over UDP to
``--sip HOST:PORT``, or, with a bare ``--sip``, to the in-process server listening for
SIP on a free loopback port. The same turns, latencies and transcript are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from agentplatform.agents.store import AgentStore
from agentplatform.audio.wav import read_wav, write_wav
from agentplatform.catalog import load_catalog
from agentplatform.config import get_settings
from agentplatform.testing.openai_realtime_server import OpenAIRealtimeServer, voice_like
from agentplatform.testing.sip_caller import SipCaller
from agentplatform.testing.sip_listening import voiced_ms, wait_for_voice
from agentplatform.testing.sipp_peer import free_udp_port
from agentplatform.testing.stack import LocalServer
from agentplatform.testing.twilio_caller import TwilioCaller

LOCAL_SIP = "local"  # ``--sip`` with no address: the in-process server's own SIP listener
CALLER_TEXTS = ["Hi, I'd like to book an appointment.", "Monday morning works, thanks. Bye!"]
# What the caller says to an agent that really listens (the cascade), in the local voice.
SPOKEN_QUESTIONS = ["What are your hours?", "Where are you?", "Thanks, goodbye."]


def synthetic_utterance() -> bytes:
    """1.2 s of voice-like sound at 8 kHz, loud enough for any VAD."""
    return voice_like(1200, "audio/pcm")[::3]  # 24 kHz → 8 kHz is fine for a buzz this low


def latency_lines(detail: dict | None, heard: list[float]) -> list[str]:
    """One line per answered turn with the server's figure (caller stopped speaking →
    first answer audio on the line, as the call page and its events show it) and its
    parts; without a record, what the caller measured, said to be that."""
    from agentplatform.observability.turn_latency import LABELS, PARTS

    answers = [t for t in (detail or {}).get("turns", [])
               if t["role"] == "assistant" and t.get("latency_ms") is not None]
    if not answers:
        return [f"  turn {i}: {ms:,.0f} ms from the caller's last word to the answer heard "
                f"(measured by the caller: no call record to read)"
                for i, ms in enumerate(heard, 1)]
    lines = []
    for i, turn in enumerate(answers, 1):
        parts = turn.get("latency_parts") or {}
        split = ", ".join(f"{LABELS[k]} {parts[k]:,.0f}" for k in PARTS if parts.get(k))
        lines.append(f"  turn {i}: {turn['latency_ms']:,.0f} ms caller stopped → first answer "
                     f"audio on the line" + (f" ({split})" if split else ""))
    return lines


async def _transcript(base_url: str, call_sid: str) -> dict | None:
    async with httpx.AsyncClient(base_url=base_url, timeout=5) as client:
        calls = (await client.get("/api/calls", params={"limit": 20})).json()["calls"]
        for call in calls:
            if call["carrier_call_id"] == call_sid:
                return (await client.get(f"/api/calls/{call['id']}")).json()
    return None


async def _converse(caller: Any, utterances: list[bytes], turns: int, *,
                    ended: Callable[[], bool],
                    answer: Callable[[float], Awaitable[float]]) -> list[float]:
    """Let the greeting play, then ask each question in turn and time the answer
    (caller's last speech sent → first answer audio heard, ms); hang up at the end.
    The carrier's caller decides what "ended" and "the answer started" mean."""
    latencies: list[float] = []
    try:
        with contextlib.suppress(TimeoutError):
            await caller.wait_for_audio(10)
            await caller.wait_for_silence(400, 30)
        for turn in range(turns):
            if ended():
                break
            await caller.say(utterances[turn % len(utterances)])
            spoke_at = time.monotonic()
            try:
                heard_at = await answer(spoke_at)
            except TimeoutError:
                break
            latencies.append((heard_at - spoke_at) * 1000.0)
            with contextlib.suppress(TimeoutError):
                await caller.wait_for_silence(400, 30)
    finally:
        await caller.hang_up()
    return latencies


async def place_call(base_url: str, number: str, utterances: list[bytes], turns: int,
                     auth_token: str | None = None) -> tuple[TwilioCaller, list[float]]:
    caller = TwilioCaller(base_url, to=number, auth_token=auth_token)
    if not await caller.dial():
        raise SystemExit(f"no stream: the server answered {caller.webhook_status}: "
                         f"{caller.answer.xml if caller.answer else ''}")
    latencies = await _converse(
        caller, utterances, turns, ended=lambda: caller.close_code is not None,
        answer=lambda spoke_at: caller.wait_for_audio(15))
    return caller, latencies


async def place_sip_call(address: str, number: str, utterances: list[bytes],
                         turns: int) -> tuple[SipCaller, list[float]]:
    """The SIP twin of :func:`place_call`: each latency runs from the caller's last
    speech packet sent to the first voiced packet of the answer arriving."""
    caller = SipCaller(address, to=number)
    if not await caller.dial():
        await caller.close()
        raise SystemExit(f"no call: the SIP server at {address} answered {caller.final_status}")
    latencies = await _converse(
        caller, utterances, turns, ended=lambda: caller.closed_by_server,
        answer=lambda spoke_at: wait_for_voice(caller, spoke_at, 15))
    return caller, latencies


def local_sip_settings() -> dict[str, object]:
    """SIP on a free loopback port, answering only this machine, with its own RTP range."""
    rtp = free_udp_port(even=True, span=20)
    return {"sip_listen": f"127.0.0.1:{free_udp_port()}", "sip_allowed_peers": "127.0.0.1/32",
            "sip_rtp_ports": f"{rtp}-{rtp + 19}"}


def _utterances(args: argparse.Namespace, voice_streaming: bool) -> tuple[list[bytes], int]:
    """What the caller says: a WAV, sentences in the local voice, or a voice-like buzz.

    A cascade agent really transcribes what it hears, so by default it is asked real
    questions; a simulated realtime model only needs to hear that someone spoke.
    """
    if args.audio:
        return [read_wav(args.audio, 8000)], args.turns or 2
    sentences = args.say or ([] if voice_streaming else SPOKEN_QUESTIONS)
    if sentences:
        from agentplatform.testing.speech_fixtures import spoken

        return [spoken(text) for text in sentences], args.turns or len(sentences)
    return [synthetic_utterance()], args.turns or 2


async def run_call_command(args: argparse.Namespace) -> int:
    settings = get_settings()
    store = AgentStore(settings.agents_dir, load_catalog(), settings)
    agent = store.get(args.agent)
    if agent is None or not agent.spec.phone_numbers:
        known = ", ".join(sorted(store.agents)) or "none"
        print(f"no agent {args.agent!r} with a phone number in {settings.agents_dir} (agents: {known})")
        return 2
    number = agent.spec.phone_numbers[0]
    utterances, turns = _utterances(args, agent.spec.voice_streaming)

    sip = getattr(args, "sip", None)
    async with contextlib.AsyncExitStack() as stack:
        base_url = args.url
        if sip == LOCAL_SIP and base_url:
            print("--sip with no address starts its own server; give --sip HOST:PORT with --url")
            return 2
        if not base_url and sip not in (None, LOCAL_SIP):
            base_url = ""  # a remote trunk: its records are only read when --url names them
        elif not base_url:
            overrides: dict[str, object] = {}
            if args.simulated_model:
                sim = await stack.enter_async_context(
                    OpenAIRealtimeServer(pace=1.0, reply_ms=1500, record=False,
                                         caller_texts=CALLER_TEXTS))
                overrides.update(openai_realtime_url=sim.url, openai_api_key=sim.api_key)
                tmp = stack.enter_context(tempfile.TemporaryDirectory())
                overrides["database_url"] = f"sqlite:///{Path(tmp) / 'calls.db'}"
            # The in-process server checks Twilio signatures like any other: give it a
            # token (the one asked for, or a fresh one) and sign the call with it.
            auth_token = args.auth_token or secrets.token_urlsafe(24)
            overrides.update(twilio_auth_token=auth_token, public_url="",
                             insecure_skip_twilio_signature=False)
            if sip == LOCAL_SIP:
                overrides.update(local_sip_settings())
                sip = str(overrides["sip_listen"])
            server = await stack.enter_async_context(
                LocalServer(settings.model_copy(update=overrides)))
            base_url = server.base_url
        else:
            auth_token = args.auth_token or ""
        if sip is not None:
            caller, latencies = await place_sip_call(sip, number, utterances, turns)
            call_id, heard_ms = caller.call_id, voiced_ms(caller)
        else:
            caller, latencies = await place_call(base_url, number, utterances, turns, auth_token)
            call_id, heard_ms = caller.call_sid, caller.played_ms
        await asyncio.sleep(0.3)  # let the server close the record
        detail = await _transcript(base_url, call_id) if base_url else None

    if args.out:
        write_wav(args.out, caller.heard_pcm(), 8000)
    print(f"call {call_id} to {args.agent} ({number})" + (f" over SIP to {sip}" if sip else ""))
    for line in latency_lines(detail, latencies):
        print(line)
    if detail:
        print(f"  model {detail['model']}, ended: {detail['end_reason']}, "
              f"cost ${detail['cost_usd'] or 0:.4f}")
        for turn in detail["turns"]:
            mark = " (interrupted)" if turn["interrupted"] else ""
            print(f"  {turn['role']:>9}: {turn['text']}{mark}")
    print(f"  heard {heard_ms / 1000:.1f} s of agent audio"
          + (f", written to {args.out}" if args.out else ""))
    return 0
