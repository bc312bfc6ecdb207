"""One latency figure per answer, and where it went.

The measure (docs: the design's turn latency) runs from the moment the caller stopped
speaking to the moment the answer's first audio was handed to the phone line. It is
the bridge's ``latency_ms``, and the same number is shown by ``agentplatform call``,
the call page's chart and the call's events.

It is split into parts that add up to it (ms, all optional):

``end_of_turn``  the silence the turn detector waited out after the last word
``stt``          speech-to-text of the utterance (cascade)
``llm``          the text model's first words (cascade)
``tts``          text-to-speech of the first piece (cascade)
``model``        a speech model's first answer audio (realtime; it hears and speaks
                 itself, so its wait cannot be split further from outside)
``tools``        tools the model called before answering
``other``        what is left: the bridge, transcoding, sending

A cascade's own timings (``cascade_turn`` notice) provide stt/llm/tts; otherwise the
model's wait is one ``model`` part. The local offline agents are cascades, so their
wait is never all called "model".
"""

from __future__ import annotations

from collections.abc import Mapping

# In the order they happen, which is the order the chart stacks them.
PARTS: tuple[str, ...] = ("end_of_turn", "stt", "llm", "tts", "model", "tools", "other")
LABELS: dict[str, str] = {
    "end_of_turn": "end-of-turn wait", "stt": "speech-to-text", "llm": "LLM first token",
    "tts": "TTS first audio", "model": "model first audio", "tools": "tools",
    "other": "bridge and line",
}
COLORS: dict[str, str] = {
    "end_of_turn": "#b9c2cc", "stt": "#6f9fd8", "llm": "#2d5fa8", "tts": "#5aa17f",
    "model": "#3d6fa8", "tools": "#c47f17", "other": "#d9dee4",
}
# The notice a cascade session sends with its own split of a turn, and its names.
CASCADE_NOTICE = "cascade_turn"
CASCADE_PARTS = {"stt_ms": "stt", "llm_first_token_ms": "llm", "tts_first_audio_ms": "tts"}


def split(*, waited_ms: float, model_ms: float, sent_after_ms: float, tool_ms: float,
          cascade: Mapping[str, float] | None = None) -> dict[str, float]:
    """The parts of one answer's latency.

    ``waited_ms``: end-of-turn wait before the model was told the turn ended;
    ``model_ms``: turn ended → first answer audio from the model; ``sent_after_ms``:
    that audio received → sent to the line; ``tool_ms``: tool time inside ``model_ms``;
    ``cascade``: the cascade's own notice, when the model is one."""
    parts: dict[str, float] = {"end_of_turn": max(waited_ms, 0.0)}
    inside = max(model_ms - tool_ms, 0.0)
    if cascade:
        own = {CASCADE_PARTS[k]: max(float(v), 0.0) for k, v in cascade.items()
               if k in CASCADE_PARTS and isinstance(v, int | float)}
        spent = sum(own.values())
        if spent > inside and spent > 0:  # its clock and ours differ by a hair: fit it
            own = {k: v * inside / spent for k, v in own.items()}
        parts.update(own)
        leftover = inside - sum(own.values())
        if leftover > 0.5:
            parts["other"] = leftover
    else:
        parts["model"] = inside
    if tool_ms > 0:
        parts["tools"] = tool_ms
    parts["other"] = parts.get("other", 0.0) + max(sent_after_ms, 0.0)
    return {k: round(v, 1) for k, v in parts.items()}


def total(parts: Mapping[str, float]) -> float:
    return sum(v for k, v in parts.items() if k in PARTS)
