"""``judge:`` assertions: a language model reads the transcript and rules on a criterion.

Judged assertions are not deterministic and need a model, so they run only with
``--judge`` and a configured judge: an OpenAI-compatible chat-completions endpoint
(``JUDGE_URL``, ``JUDGE_MODEL``, its key in ``JUDGE_API_KEY``; a local Ollama or
llama.cpp server works). Without ``--judge`` they are skipped, never failed.

The judge answers ``PASS`` or ``FAIL`` on its first line, then one sentence why; any
other answer fails the assertion with what the judge said.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from agentplatform.realtime.base import ResponseDone, SessionError
from agentplatform.scenarios.assertions import PASS, Outcome, fail
from agentplatform.scenarios.record import ConversationRecord
from agentplatform.text.base import TextDelta
from agentplatform.text.chat_completions import ChatCompletionsSession

INSTRUCTIONS = (
    "You check phone conversations between a caller and a voice agent against one "
    "criterion. Read the transcript and the criterion. Answer PASS or FAIL on the first "
    "line, then one sentence saying why. Judge only what the transcript shows."
)


@dataclass(frozen=True, slots=True)
class JudgeConfig:
    url: str
    model: str
    api_key: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> JudgeConfig | None:
        url, model = env.get("JUDGE_URL", ""), env.get("JUDGE_MODEL", "")
        if not url or not model:
            return None
        return cls(url, model, env.get("JUDGE_API_KEY", ""))


def transcript_text(record: ConversationRecord) -> str:
    lines = [f"{'Agent' if t.role == 'assistant' else 'Caller'}: {t.text}"
             for t in record.call.turns]
    lines += [f"(tool {t.name} called with {t.arguments})" for t in record.whole.tools]
    return "\n".join(lines)


def verdict(answer: str) -> Outcome:
    first = answer.strip().splitlines()[0].strip().upper() if answer.strip() else ""
    if first.startswith("PASS"):
        return PASS
    reason = answer.strip() or "the judge said nothing"
    return fail(f"the judge ruled: {reason}")


def make_judge(config: JudgeConfig) -> Callable[[str, ConversationRecord], Awaitable[Outcome]]:
    async def judge(criterion: str, record: ConversationRecord) -> Outcome:
        session = ChatCompletionsSession(url=config.url, model=config.model,
                                         api_key=config.api_key, instructions=INSTRUCTIONS,
                                         temperature=0.0, max_output_tokens=200)
        answer: list[str] = []
        try:
            await session.connect()
            await session.send_user(f"Transcript:\n{transcript_text(record)}\n\n"
                                    f"Criterion: {criterion}")
            async for event in session.events():
                if isinstance(event, TextDelta):
                    answer.append(event.text)
                elif isinstance(event, SessionError):
                    return fail(f"the judge model failed: {event.message}")
                elif isinstance(event, ResponseDone):
                    break
        finally:
            await session.close()
        return verdict("".join(answer))

    return judge
