"""``make bench`` for the cascade: how long a caller waits for the offline agent.

Method: the server runs in its own process, free to use both cores (one call at a
time: the local engines' inference threads are the point here), serving a
``local/offline`` agent (Silero VAD, Whisper tiny.en, the rules responder, Piper).
One simulated Twilio caller on the other core asks short questions, each spoken by
the local voice, and waits for the answer to finish before the next. Two views:

- the caller's: last frame of the question sent → first frame of the answer received;
- the server's split of the same wait (``cascade/metrics.py``): VAD hangover (the
  silence the detector waits for), speech-to-text, the text step's first words, and
  synthesis of the first piece, read from ``/debug/metrics``.

Figures are reported, never asserted.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from pathlib import Path

import httpx

from agentplatform.bench import NUMBER, _pct, start_server
from agentplatform.testing.speech_fixtures import spoken
from agentplatform.testing.twilio_caller import SIMULATED_AUTH_TOKEN, TwilioCaller

AGENT = """\
name: bench
model: local/offline
voice_streaming: false
greeting: Hello.
phone_numbers: ["+15555550100"]
turn_detection: {{silence_duration_ms: {silence_ms}}}
rules:
  - match: \\b(hours?|open)\\b
    reply: We are open nine to five. Anything else?
  - match: \\b(where|address)\\b
    reply: We are at 120 Maple Street. Anything else?
fallback_reply: Sorry, could you say that again?
"""
QUESTIONS = ("What are your hours?", "Where are you?", "When do you open?",
             "What is your address?")


async def run_cascade(turns: int, workdir: Path, silence_ms: int = 400) -> dict[str, object]:
    agents = workdir / "agents-cascade"
    agents.mkdir(exist_ok=True)
    (agents / "bench.yaml").write_text(AGENT.format(silence_ms=silence_ms))
    speech = {q: spoken(q) for q in QUESTIONS}  # rendered before the clock starts
    server = await start_server({
        "AGENTS_DIR": str(agents), "DATABASE_URL": f"sqlite:///{workdir / 'bench-cascade.db'}",
        "TWILIO_AUTH_TOKEN": SIMULATED_AUTH_TOKEN, "PUBLIC_URL": "",
    }, workdir, pin=False)
    waits: list[float] = []
    try:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as client:
            async with TwilioCaller(server.base_url, to=NUMBER) as caller:
                await caller.wait_for_audio(60)  # engines load on the first call
                await caller.wait_for_silence(300, 30)
                await client.post("/debug/metrics/reset")
                for i in range(turns):
                    await caller.say(speech[QUESTIONS[i % len(QUESTIONS)]])
                    asked = time.monotonic()
                    answered = await caller.wait_for_audio(30)
                    waits.append((answered - asked) * 1000.0)
                    await caller.wait_for_silence(300, 30)
            split = (await client.get("/debug/metrics")).json()["cascade"]
    finally:
        server.proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.proc.wait(10)
    return {
        "turns": turns,
        "silence_duration_ms": silence_ms,
        "caller_wait_ms": {"p50": round(_pct(waits, 50), 1), "p90": round(_pct(waits, 90), 1),
                           "max": round(max(waits, default=0.0), 1)},
        "server_split_ms": split,
    }


def cascade_table(result: dict[str, object]) -> str:
    split = result["server_split_ms"]
    rows = [f"cascade, {result['turns']} turns, VAD silence {result['silence_duration_ms']} ms "
            f"(p50 / p90 ms)"]
    for name in ("vad_hangover_ms", "stt_ms", "llm_first_token_ms", "tts_first_audio_ms",
                 "turn_ms"):
        rows.append(f"  {name:<20} {split[name]['p50']:>8.1f} / {split[name]['p90']:<8.1f}")
    wait = result["caller_wait_ms"]
    rows.append(f"  {'caller felt':<20} {wait['p50']:>8.1f} / {wait['p90']:<8.1f}")
    return "\n".join(rows)
