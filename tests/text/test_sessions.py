"""Which text session serves an agent: an endpoint, the local step, or the realtime model."""

from __future__ import annotations

import pytest

from agentplatform.agents.spec import AgentSpec, Rule
from agentplatform.catalog import load_catalog
from agentplatform.config import Settings
from agentplatform.errors import CredentialsError, ModelError
from agentplatform.text.chat_completions import ChatCompletionsSession
from agentplatform.text.realtime_text import RealtimeTextSession
from agentplatform.text.rules import RulesSession
from agentplatform.text.sessions import open_text_session

CATALOG = load_catalog()


def _open(agent: AgentSpec, settings: Settings | None = None):
    return open_text_session(agent, instructions="Be brief.", tools=[], catalog=CATALOG,
                             settings=settings or Settings(_env_file=None))


def _agent(**kw) -> AgentSpec:
    return AgentSpec.model_validate({"name": "desk", "voice_streaming": False, **kw})


def test_a_cascade_llm_endpoint_wins_over_the_model() -> None:
    session = _open(_agent(model="google/gemini-3.1-flash-live", cascade={"llm": {
        "url": "http://127.0.0.1:11434/v1/", "model": "qwen2.5"}}))
    assert isinstance(session, ChatCompletionsSession)
    assert (session.url, session.model) == ("http://127.0.0.1:11434/v1", "qwen2.5")


def test_a_missing_endpoint_key_variable_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.delenv("TOOL_SECRET_DESK_LLM_KEY", raising=False)
    agent = _agent(cascade={"llm": {"url": "https://llm.example/v1", "model": "m",
                                    "api_key_env": "TOOL_SECRET_DESK_LLM_KEY"}})
    with pytest.raises(CredentialsError, match="TOOL_SECRET_DESK_LLM_KEY"):
        _open(agent)


def test_a_chat_endpoint_key_may_not_be_a_platform_secret(monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-platform")
    agent = _agent(cascade={"llm": {"url": "https://llm.example/v1", "model": "m",
                                    "api_key_env": "OPENAI_API_KEY"}})
    with pytest.raises(CredentialsError, match="cascade.llm.api_key_env"):
        _open(agent)


def test_the_local_model_uses_the_local_endpoint_when_set() -> None:
    settings = Settings(_env_file=None, local_llm_url="http://127.0.0.1:8080/v1")
    session = _open(_agent(model="local/offline"), settings)
    assert isinstance(session, ChatCompletionsSession)
    assert (session.url, session.model) == ("http://127.0.0.1:8080/v1", "llama3.2")


def test_the_local_model_without_an_endpoint_uses_the_rules() -> None:
    session = _open(_agent(model="local/offline", rules=[Rule(match="hi", reply="Hello.")]))
    assert isinstance(session, RulesSession)
    assert session.match("oh hi there") is not None


@pytest.mark.parametrize("model", ["openai/gpt-realtime", "azure/gpt-realtime-mini"])
def test_openai_and_azure_models_answer_in_text_modality(model: str) -> None:
    settings = Settings(_env_file=None, openai_api_key="k", azure_openai_api_key="k",
                        azure_openai_endpoint="https://x.openai.azure.com")
    session = _open(_agent(model=model), settings)
    assert isinstance(session, RealtimeTextSession)
    assert session.adapter.setup.output_modality == "text"
    assert session.adapter.build_session()["audio"]["input"]["turn_detection"] is None


@pytest.mark.parametrize("model", ["google/gemini-3.1-flash-live", "amazon/nova-sonic"])
def test_audio_only_models_are_refused_with_a_clear_error(model: str) -> None:
    with pytest.raises(ModelError, match="only produces audio"):
        _open(_agent(model=model))
