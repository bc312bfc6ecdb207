from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from openai.types.realtime import RealtimeFunctionTool, RealtimeSessionCreateRequest

from agentplatform.agents.spec import AgentSpec, EndCallTool, TransferCallTool, WebhookTool
from agentplatform.errors import ToolError
from agentplatform.tools import EndCall, ToolRunner, Transfer, parse_arguments, tool_specs

WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
}


def _agent(*tools: Any) -> AgentSpec:
    return AgentSpec(name="front-desk", tools=list(tools))


def _full_agent(url: str = "https://api.example/weather") -> AgentSpec:
    return _agent(
        WebhookTool(name="weather", description="Weather now.", url=url, parameters=WEATHER_SCHEMA),
        EndCallTool(),
        TransferCallTool(destinations={"sales": "+14155550100", "support": "+14155550111"}),
    )


@pytest.fixture
async def offline_client():
    """A client whose transport fails every request: built-in and argument
    tests must never reach the network."""

    def refuse(request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"unexpected request to {request.url}")

    async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as client:
        yield client


# ---------------------------------------------------------------- tool_specs


def test_tool_specs_follow_the_agent_order_and_shapes() -> None:
    specs = tool_specs(_full_agent())
    assert [s.name for s in specs] == ["weather", "end_call", "transfer_call"]
    weather, end, transfer = specs
    assert weather.parameters == WEATHER_SCHEMA
    assert weather.description == "Weather now."
    assert end.parameters["type"] == "object" and end.parameters.get("required", []) == []
    assert transfer.parameters["properties"]["destination"]["enum"] == ["sales", "support"]


def test_tool_specs_copy_webhook_schemas() -> None:
    agent = _full_agent()
    tool_specs(agent)[0].parameters["properties"]["city"]["type"] = "number"
    assert agent.tools[0].parameters["properties"]["city"]["type"] == "string"


def test_tool_specs_validate_as_openai_realtime_function_tools() -> None:
    dicts = [
        {
            "type": "function",
            "name": s.name,
            "description": s.description,
            "parameters": s.parameters,
        }
        for s in tool_specs(_full_agent())
    ]
    for d in dicts:
        tool = RealtimeFunctionTool.model_validate(d)
        assert tool.model_dump(exclude_none=True) == d  # nothing dropped or coerced
        assert json.loads(json.dumps(d)) == d  # plain JSON all the way down
    session = RealtimeSessionCreateRequest.model_validate({"type": "realtime", "tools": dicts})
    assert [t.name for t in session.tools] == ["weather", "end_call", "transfer_call"]


def test_two_tools_with_one_name_are_rejected() -> None:
    agent = _agent(EndCallTool(), EndCallTool())
    with pytest.raises(ValueError, match="two tools named 'end_call'"):
        tool_specs(agent)


# ---------------------------------------------------------------- parse_arguments


@pytest.mark.parametrize(("text", "expected"), [("", {}), ("  ", {}), ('{"a": 1}', {"a": 1})])
def test_parse_arguments_accepts_objects_and_empty_text(text: str, expected: dict) -> None:
    assert parse_arguments(text) == expected


@pytest.mark.parametrize(
    ("text", "message"), [("{nope", "not valid JSON"), ("[1, 2]", "JSON object")]
)
def test_parse_arguments_rejects_bad_json_and_non_objects(text: str, message: str) -> None:
    with pytest.raises(ToolError, match=message):
        parse_arguments(text)


# ---------------------------------------------------------------- ToolRunner


async def test_end_call_returns_the_end_call_action(offline_client) -> None:
    outcome = await ToolRunner(_full_agent(), http_client=offline_client).run("end_call", "{}")
    assert outcome.ok and outcome.name == "end_call"
    assert outcome.action == EndCall()
    assert "goodbye" in outcome.output.lower()
    assert outcome.duration_ms >= 0


async def test_transfer_returns_the_transfer_action_with_the_number(offline_client) -> None:
    runner = ToolRunner(_full_agent(), http_client=offline_client)
    outcome = await runner.run("transfer_call", '{"destination": "sales"}')
    assert outcome.ok
    assert outcome.action == Transfer(number="+14155550100", destination="sales")


async def test_transfer_to_an_unknown_destination_fails_listing_valid_ones(offline_client) -> None:
    runner = ToolRunner(_full_agent(), http_client=offline_client)
    outcome = await runner.run("transfer_call", '{"destination": "legal"}')
    assert not outcome.ok and outcome.action is None
    assert "legal" in outcome.output and "sales, support" in outcome.output


async def test_unknown_tool_fails_naming_the_available_ones(offline_client) -> None:
    outcome = await ToolRunner(_full_agent(), http_client=offline_client).run("book_table", "{}")
    assert not outcome.ok and outcome.action is None
    assert "book_table" in outcome.output and "weather, end_call, transfer_call" in outcome.output


@pytest.mark.parametrize("arguments", ['{"city": ', "[]", '"Lisbon"'])
async def test_bad_arguments_fail_without_calling_the_webhook(
    offline_client, arguments: str
) -> None:
    outcome = await ToolRunner(_full_agent(), http_client=offline_client).run("weather", arguments)
    assert not outcome.ok
    assert outcome.output.startswith("The weather tool failed: the arguments")


async def test_webhook_success_through_the_runner(echo_server, http_client) -> None:
    agent = _agent(
        WebhookTool(name="weather", url=echo_server.url("/echo"), allow_private_network=True)
    )
    outcome = await ToolRunner(agent, http_client=http_client).run("weather", '{"city": "Porto"}')
    assert outcome.ok and outcome.action is None
    assert json.loads(outcome.output)["body"] == {"city": "Porto"}


async def test_webhook_http_error_through_the_runner(echo_server, http_client) -> None:
    agent = _agent(
        WebhookTool(name="weather", url=echo_server.url("/status/503"), allow_private_network=True)
    )
    outcome = await ToolRunner(agent, http_client=http_client).run("weather", "{}")
    assert not outcome.ok
    assert outcome.output.startswith("The weather tool failed: HTTP 503")


async def test_webhook_timeout_through_the_runner(echo_server, http_client) -> None:
    agent = _agent(
        WebhookTool(
            name="weather",
            url=echo_server.url("/slow"),
            allow_private_network=True,
            timeout_seconds=0.2,
        )
    )
    outcome = await ToolRunner(agent, http_client=http_client).run("weather", "{}")
    assert not outcome.ok and "no reply within 0.2 seconds" in outcome.output


async def test_refused_address_through_the_runner(echo_server, http_client) -> None:
    agent = _agent(WebhookTool(name="weather", url=echo_server.url("/echo")))
    outcome = await ToolRunner(agent, http_client=http_client).run("weather", "{}")
    assert not outcome.ok and "loopback" in outcome.output
    assert echo_server.requests == []


async def test_missing_header_variable_through_the_runner(offline_client) -> None:
    agent = _agent(
        WebhookTool(
            name="weather", url="https://api.example/w", headers_from_env={"X-Key": "WEATHER_KEY"}
        )
    )
    outcome = await ToolRunner(agent, http_client=offline_client, env={}).run("weather", "{}")
    assert not outcome.ok and "WEATHER_KEY" in outcome.output


async def test_an_unexpected_exception_becomes_a_failed_outcome() -> None:
    async def resolve(host: str, port: int) -> list[str]:
        return ["93.184.216.34"]

    def explode(request: httpx.Request) -> httpx.Response:
        raise RuntimeError("transport bug")

    async with httpx.AsyncClient(transport=httpx.MockTransport(explode)) as client:
        agent = _agent(WebhookTool(name="weather", url="http://api.example/w"))
        outcome = await ToolRunner(agent, http_client=client, resolver=resolve).run("weather", "{}")
    assert not outcome.ok and outcome.output == "The weather tool failed unexpectedly."
