"""Speech engines for the cascade (voice streaming off): Silero VAD for turn-taking,
speech-to-text and text-to-speech behind two small seams (``stt.SpeechToText``,
``tts.TextToSpeech``), each with a local engine that needs no network and an OpenAI
engine over HTTP. Which class serves a catalog service is data (``ENGINES``)."""

from agentplatform.speech.stt import SpeechToText, Transcription, build_stt
from agentplatform.speech.tts import TextToSpeech, build_tts
from agentplatform.speech.vad import SileroVad, SpeechEnd, SpeechStart

__all__ = [
    "SileroVad",
    "SpeechEnd",
    "SpeechStart",
    "SpeechToText",
    "TextToSpeech",
    "Transcription",
    "build_stt",
    "build_tts",
]
