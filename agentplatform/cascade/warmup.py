"""Load the local speech engines before the first call needs them.

Loading Piper's voice and Whisper's weights takes a second or two; paid during the
first call, that is silence the first caller hears. The server starts answering at
once and warms the engines its cascade agents use in the background, each on the
thread that will run it. The lines an agent says word for word (its greeting, the
offline rules' replies) are rendered too, piece by piece as the cascade will ask for
them, so those answers start with no synthesis at all.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterable

from agentplatform.agents.spec import AgentSpec
from agentplatform.cascade.sentences import SentenceBuffer
from agentplatform.cascade.session import DIDNT_CATCH
from agentplatform.catalog import Catalog, CatalogError

log = logging.getLogger(__name__)


def local_engines_in_use(agents: Iterable[AgentSpec], catalog: Catalog) -> set[str]:
    """Which local engines (``stt``, ``tts``) some cascade agent will use."""
    used: set[str] = set()
    for agent in agents:
        try:
            model = catalog.model(agent.model)
            stt = catalog.stt_service(agent.cascade.stt.service)
            tts = catalog.tts_service(agent.cascade.tts.service)
        except CatalogError:
            continue
        if agent.voice_streaming and model.provider.speech:
            continue
        used.add("vad")
        if not stt.url:
            used.add("stt")
        if not tts.url:
            used.add("tts")
    return used


def spoken_pieces(text: str) -> list[str]:
    """The pieces the cascade hands the voice for ``text`` streamed word by word (as
    the rules responder streams it)."""
    buffer = SentenceBuffer()
    pieces = [p for word in re.findall(r"\s*\S+", text) for p in buffer.feed(word)]
    if rest := buffer.flush():
        pieces.append(rest)
    return pieces


def fixed_lines(agents: Iterable[AgentSpec], catalog: Catalog) -> list[str]:
    """Pieces the local voice will say word for word for cascade ``agents``: greetings,
    rule replies (without tool output placeholders), fallbacks."""
    lines: dict[str, None] = {DIDNT_CATCH: None}
    for agent in agents:
        try:
            local_voice = not catalog.tts_service(agent.cascade.tts.service).url
            model = catalog.model(agent.model)
        except CatalogError:
            continue
        if not local_voice or (agent.voice_streaming and model.provider.speech):
            continue
        texts = [agent.greeting or "", agent.fallback_reply or ""]
        for rule in agent.rules:
            texts += [rule.reply or "", rule.after_tool or ""]
        for text in texts:
            if text.strip() and "{" not in text:
                lines.update(dict.fromkeys(spoken_pieces(text)))
    return list(lines)


async def warm_local_engines(engines: set[str], lines: list[str] | None = None) -> None:
    """Load ``engines`` off the event loop; a failure is logged, and calls will say it."""
    from agentplatform.speech import stt_local, tts_local, vad
    from agentplatform.speech.workers import stt_executor, tts_executor

    loop = asyncio.get_running_loop()
    jobs = {"vad": (None, vad.preload), "stt": (stt_executor(), stt_local.preload),
            "tts": (tts_executor(), tts_local.preload)}
    for name in sorted(engines):
        executor, preload = jobs[name]
        try:
            await loop.run_in_executor(executor, preload)
        except Exception:  # noqa: BLE001 - the server keeps serving other agents
            log.exception("could not load the local %s engine", name)
        else:
            log.info("local %s engine loaded", name)
    if "tts" in engines and lines:
        try:
            await loop.run_in_executor(tts_executor(), tts_local.remember, lines)
        except Exception:  # noqa: BLE001 - the lines are rendered on first use instead
            log.exception("could not render the agents' fixed lines")
