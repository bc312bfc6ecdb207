"""The model-side seam. Every provider adapter speaks ``ModelSession``; the bridge
knows nothing else about providers.

An adapter turns its wire protocol into the small set of normalized events below.
Audio is PCM16 little-endian mono at ``capabilities.output_rate`` (or raw G.711
μ-law at 8 kHz when the session was opened with ``audio_format="g711_ulaw"``).
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

AudioFormat = Literal["pcm16", "g711_ulaw"]


@dataclass(frozen=True, slots=True)
class Capabilities:
    input_rate: int = 24000
    output_rate: int = 24000
    # The provider can be told how much of an answer was heard (OpenAI-style truncate).
    truncates: bool = True
    # The provider takes and returns G.711 μ-law itself (no transcode needed).
    g711: bool = False
    # The provider can answer in text modality.
    text_modality: bool = True


# ---------------------------------------------------------------- events out


@dataclass(slots=True)
class AudioDelta:
    item_id: str
    audio: bytes
    received_at: float = 0.0  # time.monotonic() when the adapter read it off the wire


@dataclass(slots=True)
class AudioDone:
    item_id: str


@dataclass(slots=True)
class Transcript:
    role: Literal["user", "assistant"]
    text: str
    final: bool
    item_id: str = ""


@dataclass(slots=True)
class SpeechStarted:
    """The caller began speaking (the barge-in signal)."""

    item_id: str = ""


@dataclass(slots=True)
class SpeechStopped:
    item_id: str = ""
    # The silence already waited out after the caller's last word before the turn was
    # called over: part of what the caller waits for the answer.
    waited_ms: float = 0.0


@dataclass(slots=True)
class ToolCall:
    call_id: str
    name: str
    arguments: str  # JSON text, as the model produced it


@dataclass(slots=True)
class Usage:
    """Token counts of one response, normalized across providers."""

    input_text: int = 0
    input_audio: int = 0
    input_cached: int = 0
    output_text: int = 0
    output_audio: int = 0

    def add(self, other: Usage) -> None:
        self.input_text += other.input_text
        self.input_audio += other.input_audio
        self.input_cached += other.input_cached
        self.output_text += other.output_text
        self.output_audio += other.output_audio

    @property
    def total(self) -> int:
        return self.input_text + self.input_audio + self.output_text + self.output_audio


@dataclass(slots=True)
class ResponseDone:
    status: str = "completed"
    usage: Usage | None = None


@dataclass(slots=True)
class SessionNotice:
    """Something worth recording that needs no action (reconnected, resumed, recycled)."""

    kind: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class SessionError:
    code: str
    message: str
    fatal: bool = False


ModelEvent = (
    AudioDelta
    | AudioDone
    | Transcript
    | SpeechStarted
    | SpeechStopped
    | ToolCall
    | ResponseDone
    | SessionNotice
    | SessionError
)


# ---------------------------------------------------------------- what an adapter is given


@dataclass(slots=True)
class ToolSpec:
    """A function the model may call: name, description, JSON-schema parameters."""

    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(slots=True)
class HistoryItem:
    """One finished turn of the conversation, replayed when a session is reopened."""

    role: Literal["user", "assistant"]
    text: str


@dataclass(slots=True)
class SessionSetup:
    """Everything an adapter needs to open a session for one call."""

    model: str  # the wire model id / deployment name
    instructions: str
    voice: str | None = None
    max_output_tokens: int | None = None
    temperature: float | None = None
    turn_detection: dict[str, Any] | None = None  # the agent's TurnDetection, as a dict
    tools: list[ToolSpec] = field(default_factory=list)
    audio_format: AudioFormat = "pcm16"
    output_modality: Literal["audio", "text"] = "audio"
    advanced: dict[str, Any] = field(default_factory=dict)  # this provider's key only
    # Connection facts resolved from the catalog and credentials.
    url: str = ""
    api_key: str = ""
    auth: str = "bearer"  # bearer | api-key | sigv4 | query-key
    extra: dict[str, Any] = field(default_factory=dict)  # region, api_version, secret...
    history: list[HistoryItem] = field(default_factory=list)


# ---------------------------------------------------------------- the session


class ModelSession(abc.ABC):
    """One live conversation with a realtime model.

    ``connect`` opens the socket and configures the session; it raises
    ``ModelConnectError`` if that fails. After that, faults surface as
    ``SessionError`` events; the adapter reconnects (replaying history) on its own
    where the provider allows, and emits ``SessionError(fatal=True)`` when it cannot.
    """

    capabilities: Capabilities

    def __init__(self, setup: SessionSetup) -> None:
        self.setup = setup

    @abc.abstractmethod
    async def connect(self) -> None: ...

    @abc.abstractmethod
    async def send_audio(self, audio: bytes) -> None:
        """Caller audio at ``capabilities.input_rate`` (or μ-law in passthrough)."""

    @abc.abstractmethod
    async def send_text(self, text: str, *, respond: bool = True) -> None:
        """A user message (chat, DTMF, a system nudge), then optionally a reply."""

    @abc.abstractmethod
    async def request_response(self, instructions: str | None = None) -> None:
        """Ask the model to speak now (the greeting, a goodbye)."""

    @abc.abstractmethod
    async def send_tool_result(self, call_id: str, name: str, output: str) -> None: ...

    @abc.abstractmethod
    async def truncate(self, item_id: str, audio_end_ms: int) -> None:
        """Tell the model the caller heard only ``audio_end_ms`` of ``item_id``."""

    @abc.abstractmethod
    async def cancel_response(self) -> None: ...

    @abc.abstractmethod
    def events(self) -> AsyncIterator[ModelEvent]: ...

    @abc.abstractmethod
    async def close(self) -> None: ...
