"""Catalog speech services and the factories that turn them into engines."""

from __future__ import annotations

import typing

import httpx
import pytest
from openai.types.audio import SpeechCreateParams
from openai.types.audio_model import AudioModel
from openai.types.audio.speech_model import SpeechModel

from agentplatform.catalog import load_catalog
from agentplatform.config import Settings
from agentplatform.errors import CatalogError
from agentplatform.speech import stt, tts
from agentplatform.speech.stt import build_stt
from agentplatform.speech.stt_local import WhisperSpeechToText
from agentplatform.speech.stt_openai import OpenAISpeechToText
from agentplatform.speech.tts import build_tts
from agentplatform.speech.tts_local import PiperTextToSpeech
from agentplatform.speech.tts_openai import OpenAITextToSpeech

CATALOG = load_catalog()
SETTINGS = Settings(_env_file=None, openai_api_key="k")
HTTP = httpx.AsyncClient()


def make_stt(service: str, model: str | None = None, language: str | None = None):
    return build_stt(service, model, language, catalog=CATALOG, settings=SETTINGS, http=HTTP)


def make_tts(service: str, voice: str | None = None, model: str | None = None):
    return build_tts(service, voice, model, catalog=CATALOG, settings=SETTINGS, http=HTTP)


def test_each_service_gets_its_engine_with_catalog_defaults():
    local_stt, cloud_stt = make_stt("local"), make_stt("openai")
    assert isinstance(local_stt, WhisperSpeechToText) and local_stt.model == "whisper-tiny.en"
    assert isinstance(cloud_stt, OpenAISpeechToText) and cloud_stt.model == "gpt-4o-mini-transcribe"
    assert cloud_stt.url == "https://api.openai.com/v1/audio/transcriptions"
    local_tts, cloud_tts = make_tts("local"), make_tts("openai")
    assert isinstance(local_tts, PiperTextToSpeech) and local_tts.voice == "joe"
    assert isinstance(cloud_tts, OpenAITextToSpeech)
    assert (cloud_tts.voice, cloud_tts.model) == ("alloy", "gpt-4o-mini-tts")


def test_the_audio_url_setting_overrides_the_catalog_url():
    settings = Settings(_env_file=None, openai_api_key="k", openai_audio_url="http://sim:1/")
    engine = build_tts("openai", None, None, catalog=CATALOG, settings=settings, http=HTTP)
    assert engine.url == "http://sim:1/v1/audio/speech"


@pytest.mark.parametrize(("build", "match"), [
    (lambda: make_stt("azure"), "unknown STT service 'azure'; the catalog offers: local, openai"),
    (lambda: make_tts("eleven"), "unknown TTS service 'eleven'; the catalog offers: local, openai"),
    (lambda: make_stt("openai", model="whisper-2"),
     "no model 'whisper-2'; it offers: gpt-4o-transcribe, gpt-4o-mini-transcribe, whisper-1"),
    (lambda: make_stt("local", model="whisper-large"), "it offers: whisper-tiny.en"),
    (lambda: make_stt("local", language="fr"), "no language 'fr'; it offers: en"),
    (lambda: make_tts("openai", voice="joe"), "no voice 'joe'; it offers: alloy, ash,"),
    (lambda: make_tts("local", voice="alloy"), "TTS service 'local' has no voice 'alloy'; it offers: joe"),
    (lambda: make_tts("openai", model="tts-2"), "no model 'tts-2'; it offers: gpt-4o-mini-tts, tts-1"),
    (lambda: make_tts("local", model="tts-1"), "has no model choice"),
])
def test_unknown_names_are_catalog_errors_naming_what_exists(build, match):
    with pytest.raises(CatalogError, match=match):
        build()


def test_every_catalog_engine_has_a_class_and_every_class_a_catalog_engine():
    assert {s.engine for s in CATALOG.stt_services.values()} == set(stt.ENGINES)
    assert {s.engine for s in CATALOG.tts_services.values()} == set(tts.ENGINES)


def test_openai_catalog_names_are_ones_the_sdk_documents():
    transcribe_models = set(typing.get_args(AudioModel))
    assert set(CATALOG.stt_service("openai").models) <= transcribe_models
    assert set(CATALOG.stt_service("openai").prices) == set(CATALOG.stt_service("openai").models)
    speech = CATALOG.tts_service("openai")
    assert set(speech.models) <= set(typing.get_args(SpeechModel))
    voice_hint = typing.get_type_hints(SpeechCreateParams)["voice"]
    named = next(typing.get_args(a) for a in typing.get_args(voice_hint)
                 if typing.get_origin(a) is typing.Literal)
    assert set(speech.voices) <= set(named)


def test_local_tts_rate_comes_from_the_voice_and_matches_the_catalog():
    assert make_tts("local").output_rate == CATALOG.tts_service("local").output_rate == 22050
