"""Load the local speech engines before the first call needs them.

Loading Piper's voice and Whisper's weights takes a second or two; paid during the
first call, that is silence the first caller hears. The server starts answering at
once and warms the engines its cascade agents use in the background, each on the
thread that will run it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from agentplatform.agents.spec import AgentSpec
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


async def warm_local_engines(engines: set[str]) -> None:
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
