"""From agent and catalog to a SessionSetup: keys, URLs, advanced blocks."""

import pytest

from agentplatform.agents.spec import AgentSpec
from agentplatform.catalog import load_catalog
from agentplatform.config import Settings
from agentplatform.errors import CredentialsError
from agentplatform.realtime.sessions import adapter_class, build_setup


def _settings(**values) -> Settings:
    return Settings(_env_file=None, **values)


def _setup(agent: AgentSpec, settings: Settings):
    model = load_catalog().model(agent.model)
    return build_setup(agent, model, settings, instructions="hi", tools=[])


def test_platform_key_and_url_override_come_from_settings():
    setup = _setup(AgentSpec(name="a"), _settings(openai_api_key="sk-platform",
                                                  openai_realtime_url="ws://sim/v1/realtime"))
    assert setup.api_key == "sk-platform"
    assert setup.url == "ws://sim/v1/realtime"
    assert setup.model == "gpt-realtime" and setup.voice == "marin"


def test_agent_brings_its_own_key(monkeypatch):
    monkeypatch.setenv("TOOL_SECRET_TEAM_KEY", "sk-team")
    agent = AgentSpec(name="a", credentials={"api_key_env": "TOOL_SECRET_TEAM_KEY"})
    assert _setup(agent, _settings(openai_api_key="sk-platform")).api_key == "sk-team"


def test_missing_key_is_a_clear_error_naming_the_variable(monkeypatch):
    monkeypatch.delenv("TOOL_SECRET_TEAM_KEY", raising=False)
    with pytest.raises(CredentialsError, match="OPENAI_API_KEY"):
        _setup(AgentSpec(name="a"), _settings(openai_api_key=""))
    agent = AgentSpec(name="a", credentials={"api_key_env": "TOOL_SECRET_TEAM_KEY"})
    with pytest.raises(CredentialsError, match="TOOL_SECRET_TEAM_KEY"):
        _setup(agent, _settings(openai_api_key="sk-platform"))


def test_an_agent_file_cannot_read_a_platform_secret_as_its_key_or_endpoint(monkeypatch):
    """Validation refuses these names; the session refuses them again where the value
    is read, for a file that never went through validation."""
    monkeypatch.setenv("SESSION_SECRET", "do-not-leak")
    for credentials, field in (({"api_key_env": "SESSION_SECRET"}, "credentials.api_key_env"),
                               ({"endpoint_env": "SESSION_SECRET"}, "credentials.endpoint_env")):
        agent = AgentSpec(name="a", credentials=credentials)
        settings = _settings(openai_api_key="sk-platform", tool_env_allowlist="SESSION_SECRET")
        with pytest.raises(CredentialsError, match=field) as refused:
            _setup(agent, settings)
        assert "do-not-leak" not in str(refused.value)


def test_an_allow_listed_variable_may_carry_the_agents_key(monkeypatch):
    monkeypatch.setenv("TEAM_OPENAI_KEY", "sk-team")
    agent = AgentSpec(name="a", credentials={"api_key_env": "TEAM_OPENAI_KEY"})
    assert _setup(agent, _settings(tool_env_allowlist="TEAM_OPENAI_KEY")).api_key == "sk-team"
    with pytest.raises(CredentialsError, match="TOOL_ENV_ALLOWLIST"):
        _setup(agent, _settings(openai_api_key="sk-platform"))


def test_only_the_providers_own_advanced_block_reaches_the_adapter():
    agent = AgentSpec(name="a", model="amazon/nova-2-sonic", voice="tiffany",
                      advanced={"nova_sonic": {"sessionStart": {"x": 1}},
                                "openai_realtime": {"voice": "coral"}})
    setup = _setup(agent, _settings(aws_access_key_id="AKID", aws_secret_access_key="s",
                                    aws_region="eu-west-1"))
    assert setup.advanced == {"sessionStart": {"x": 1}}
    assert setup.extra["region"] == "eu-west-1" and setup.extra["secret_key"] == "s"
    assert setup.auth == "sigv4"


@pytest.mark.parametrize("protocol", ["openai_realtime", "xai_realtime", "gemini_live", "nova_sonic"])
def test_every_catalog_protocol_has_an_adapter(protocol):
    assert adapter_class(protocol).__name__.endswith("Session")
