"""``make bench`` for the cascade: how long a caller waits for the offline agent.

Method: the server runs in its own process, free to use both cores, serving
``local/offline`` agents (Silero VAD, Whisper tiny.en, the rules responder, Piper).
Simulated Twilio callers ask short questions, each spoken by the local voice, and
wait for the answer to finish before the next. Views:

- the caller's, on the caller simulator's clock: the last *voiced* frame of the
  question sent (the clip's trailing silence is cut off first, so the wait does not
  start late) → the first frame of the answer received;
- the server's split of the same wait (``cascade/metrics.py``): VAD hangover, speech-
  to-text, the text step's first words, synthesis of the first piece;
- the same questions with the turn-taking and recognizer of before (a fixed 400 ms
  silence, Whisper's 30 s window), in the same run, for comparison (the voice's
  first-phrase split and its rendered fixed lines serve both);
- mid-sentence pauses: questions with a 300–700 ms pause inside; a question is *cut*
  when answer audio arrives before the caller has finished it. The first half is
  rendered with a trailing comma, so the voice keeps the rising, unfinished tone a
  person has when they stop to think (rendered alone it would sound finished);
- capacity: 1, 2, 3… callers at once, each asking questions at its own pace, until the
  caller-felt p90 passes 1 s (``CASCADE_MAX_CALLS`` is raised for this part);
- recognition: the WER table of ``bench_speech.py``.

Figures are reported, never asserted.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from pathlib import Path

import httpx

from agentplatform.audio.frames import rms_dbfs
from agentplatform.bench import _pct, start_server
from agentplatform.testing.speech_fixtures import spoken
from agentplatform.testing.twilio_caller import SIMULATED_AUTH_TOKEN, TwilioCaller

AGENT = """\
name: {name}
model: local/offline
voice_streaming: false
greeting: Hello.
phone_numbers: ["{number}"]
cascade: {{stt: {{service: local, model: {stt_model}}}}}
turn_detection: {turn}
rules:
  - match: \\b(hours?|open\\w*)\\b
    reply: We are open nine to five, Monday to Friday.
  - match: \\b(where|address|park\\w*)\\b
    reply: We are at 120 Maple Street, with parking behind the building.
  - match: \\b(book\\w*|appoint\\w*)\\b
    reply: Of course, our staff will call you back today.
fallback_reply: Sorry, could you say that again?
"""
# name → (phone number, STT model, turn_detection)
CONFIGS = {
    "shipped": ("+15555550100", "whisper-tiny.en",
                "{type: semantic_vad, eagerness: auto, silence_duration_ms: 400}"),
    "before": ("+15555550101", "whisper-tiny.en-30s",
               "{type: server_vad, silence_duration_ms: 400}"),
}
QUESTIONS = ("What are your hours?", "Where are you?", "When do you open?",
             "What is your address?", "Do you have parking?", "Can I book a cleaning?")
# Said with a pause between the halves; none is a whole question before the pause.
PAUSED = (("I'd like to book", "an appointment for Tuesday.", 500),
          ("Can I", "book a cleaning?", 300),
          ("What are your", "opening hours?", 400),
          ("My address is", "twelve Oak Road.", 700),
          ("Do you have", "parking?", 600),
          ("I was wondering if", "you are open on Friday.", 500),
          ("I need to", "cancel my appointment.", 700),
          ("Is there parking near the", "building?", 400),
          ("I would like an appointment for", "my son.", 600),
          ("Where is your", "office?", 300))
VOICED_DBFS = -45.0
CAPACITY_LEVELS = (1, 2, 4, 6, 8, 10, 12)
CAPACITY_TURNS = 6
CAPACITY_P90_MS = 1000.0


def voiced(pcm16_8k: bytes) -> bytes:
    """``pcm16_8k`` without its trailing silence (20 ms frames under -45 dBFS)."""
    frame = 320
    end = len(pcm16_8k) // frame * frame
    while end > 0 and rms_dbfs(pcm16_8k[end - frame:end]) < VOICED_DBFS:
        end -= frame
    return pcm16_8k[:end]


def _summary(waits: list[float]) -> dict[str, float]:
    return {"p50": round(_pct(waits, 50), 1), "p90": round(_pct(waits, 90), 1),
            "max": round(max(waits, default=0.0), 1), "n": len(waits)}


async def _ask(caller: TwilioCaller, speech: bytes) -> float:
    """Say ``speech``; the wait from its last frame to the answer's first, in ms."""
    await caller.say(speech)
    asked = time.monotonic()
    answered = await caller.wait_for_audio(30)
    wait = (answered - asked) * 1000.0
    await caller.wait_for_silence(300, 30)
    return wait


async def _questions(base_url: str, number: str, turns: int, speech: dict[str, bytes],
                     offset: int = 0) -> list[float]:
    waits: list[float] = []
    async with TwilioCaller(base_url, to=number) as caller:
        await caller.wait_for_audio(60)  # engines load on the first call
        await caller.wait_for_silence(300, 30)
        for i in range(turns):
            waits.append(await _ask(caller, speech[QUESTIONS[(i + offset) % len(QUESTIONS)]]))
    return waits


async def _paused(base_url: str, number: str) -> dict[str, object]:
    cut: list[str] = []
    async with TwilioCaller(base_url, to=number) as caller:
        await caller.wait_for_audio(60)
        await caller.wait_for_silence(300, 30)
        for first, second, pause_ms in PAUSED:
            speech = (voiced(spoken(first + ",")) + bytes(16 * pause_ms)
                      + voiced(spoken(second)))
            answer = asyncio.create_task(caller.wait_for_audio(30))
            await caller.say(speech)
            if answer.done():
                cut.append(f"{first} … {second}")
            with contextlib.suppress(TimeoutError):
                await answer
            await caller.wait_for_silence(300, 30)
    return {"utterances": len(PAUSED), "cut": len(cut), "which": cut}


async def _capacity(base_url: str, speech: dict[str, bytes]) -> list[dict[str, object]]:
    levels: list[dict[str, object]] = []
    number = CONFIGS["shipped"][0]
    for calls in CAPACITY_LEVELS:
        async def one(index: int) -> list[float]:
            await asyncio.sleep(index * 0.7)  # callers do not all speak on the same beat
            return await _questions(base_url, number, CAPACITY_TURNS, speech, offset=index)
        runs = await asyncio.gather(*(one(i) for i in range(calls)), return_exceptions=True)
        waits = [w for r in runs if isinstance(r, list) for w in r]
        failed = sum(1 for r in runs if not isinstance(r, list))
        levels.append({"calls": calls, "failed": failed, "caller_wait_ms": _summary(waits)})
        if failed or _pct(waits, 90) > CAPACITY_P90_MS:
            break
    return levels


async def run_cascade(turns: int, workdir: Path, capacity: bool = True,
                      wer: bool = True) -> dict[str, object]:
    agents = workdir / "agents-cascade"
    agents.mkdir(exist_ok=True)
    for name, (number, stt_model, turn) in CONFIGS.items():
        (agents / f"bench-{name}.yaml").write_text(AGENT.format(
            name=f"bench-{name}", number=number, stt_model=stt_model, turn=turn))
    speech = {q: voiced(spoken(q)) for q in QUESTIONS}  # rendered before the clock starts
    server = await start_server({
        "AGENTS_DIR": str(agents), "DATABASE_URL": f"sqlite:///{workdir / 'bench-cascade.db'}",
        "TWILIO_AUTH_TOKEN": SIMULATED_AUTH_TOKEN, "PUBLIC_URL": "",
        # This bench measures the engines, so their own capacity check is the one that
        # counts: the process-wide CPU shedding is off, the cascade cap raised.
        "OVERLOAD_SHEDDING": "false", "CASCADE_MAX_CALLS": "100",
    }, workdir, pin=False)
    result: dict[str, object] = {"turns": turns, "configs": {}}
    try:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as client:
            for name in ("before", "shipped"):
                await client.post("/debug/metrics/reset")
                waits = await _questions(server.base_url, CONFIGS[name][0], turns, speech)
                split = (await client.get("/debug/metrics")).json()["cascade"]
                result["configs"][name] = {"caller_wait_ms": _summary(waits),
                                           "server_split_ms": split}
            result["paused"] = await _paused(server.base_url, CONFIGS["shipped"][0])
            if capacity:
                result["capacity"] = await _capacity(server.base_url, speech)
    finally:
        server.proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.proc.wait(10)
    if wer:
        from agentplatform.bench_speech import run_in_process

        result["wer"] = await asyncio.to_thread(run_in_process)
    return result


def _config_rows(name: str, config: dict[str, object], turns: int) -> list[str]:
    number, stt_model, turn = CONFIGS[name]
    split = config["server_split_ms"]
    rows = [f"cascade ({name}: {stt_model}, turn_detection {turn}), {turns} turns "
            "(p50 / p90 ms)"]
    for part in ("vad_hangover_ms", "stt_ms", "llm_first_token_ms", "tts_first_audio_ms",
                 "turn_ms"):
        rows.append(f"  {part:<20} {split[part]['p50']:>8.1f} / {split[part]['p90']:<8.1f}")
    wait = config["caller_wait_ms"]
    rows.append(f"  {'caller felt':<20} {wait['p50']:>8.1f} / {wait['p90']:<8.1f}")
    return rows


def cascade_table(result: dict[str, object]) -> str:
    rows: list[str] = []
    for name, config in result["configs"].items():
        rows += _config_rows(name, config, result["turns"])
    paused = result.get("paused")
    if paused:
        rows.append(f"mid-sentence pauses (300-700 ms): {paused['cut']} of "
                    f"{paused['utterances']} answered in the pause")
        rows += [f"  cut: {which}" for which in paused["which"]]
    for level in result.get("capacity", []):
        wait = level["caller_wait_ms"]
        rows.append(f"capacity: {level['calls']} calls at once, caller felt p50 / p90 "
                    f"{wait['p50']:.0f} / {wait['p90']:.0f} ms, {level['failed']} failed")
    if result.get("wer"):
        from agentplatform.bench_speech import wer_table

        rows.append(wer_table(result["wer"]))
    return "\n".join(rows)
