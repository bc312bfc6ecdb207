from __future__ import annotations

import ipaddress
import json
from typing import Any

import httpx
import pytest

from agentplatform.agents.spec import WebhookTool
from agentplatform.errors import ToolError
from agentplatform.tools.netguard import BlockedAddressError
from agentplatform.tools.webhook import (
    MAX_OUTPUT_CHARS,
    build_request,
    call_webhook,
    env_headers,
    pin_to_address,
    query_params,
    render_body,
)


def _tool(url: str, **fields: Any) -> WebhookTool:
    fields.setdefault("allow_private_network", True)
    return WebhookTool(name="lookup", url=url, **fields)


# ---------------------------------------------------------------- pure helpers


def test_query_params_flatten_lists_objects_booleans_and_drop_nulls() -> None:
    pairs = query_params(
        {"q": "pizza", "n": 3, "open": True, "tags": ["a", "b"], "where": {"x": 1}, "skip": None}
    )
    assert pairs == [
        ("q", "pizza"),
        ("n", "3"),
        ("open", "true"),
        ("tags", "a"),
        ("tags", "b"),
        ("where", '{"x":1}'),
    ]


def test_env_headers_read_values_and_name_a_missing_variable() -> None:
    assert env_headers({"Authorization": "TOOL_SECRET_TOKEN"},
                       {"TOOL_SECRET_TOKEN": "Bearer s3"}) == {"Authorization": "Bearer s3"}
    with pytest.raises(ToolError,
                       match=r"environment variable TOOL_SECRET_MISSING .*X-Api-Key"):
        env_headers({"X-Api-Key": "TOOL_SECRET_MISSING"}, {})
    with pytest.raises(ToolError, match="EMPTY"):
        env_headers({"X-Api-Key": "EMPTY"}, {"EMPTY": ""}, frozenset({"EMPTY"}))


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
def test_body_methods_send_arguments_as_json(method: str) -> None:
    request = build_request(_tool("https://api.example/x", method=method), {"a": 1}, {})
    assert request.json_body == {"a": 1} and request.params == []


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_query_methods_send_arguments_as_params(method: str) -> None:
    request = build_request(_tool("https://api.example/x", method=method), {"a": 1}, {})
    assert request.json_body is None and request.params == [("a", "1")]


@pytest.mark.parametrize("url", ["ftp://api.example/x", "file:///etc/passwd", "/relative"])
def test_build_request_refuses_non_http_urls(url: str) -> None:
    with pytest.raises(ToolError, match="http or https"):
        build_request(_tool(url), {}, {})


@pytest.mark.parametrize(
    ("url", "address", "expected_url", "host"),
    [
        (
            "http://api.example:8080/a?b=1",
            "93.184.216.34",
            "http://93.184.216.34:8080/a?b=1",
            "api.example:8080",
        ),
        (
            "http://api.example/a",
            "2606:2800:220:1::1",
            "http://[2606:2800:220:1::1]/a",
            "api.example",
        ),
    ],
)
def test_pin_to_address_connects_to_the_ip_and_keeps_the_name_as_host(
    url: str, address: str, expected_url: str, host: str
) -> None:
    pinned, host_header = pin_to_address(httpx.URL(url), ipaddress.ip_address(address))
    assert str(pinned) == expected_url
    assert host_header == host


def test_render_body_compacts_json() -> None:
    body = json.dumps({"a": [1, 2], "b": "é"}, indent=4).encode()
    assert (
        render_body(body, "application/json", complete=True, encoding="utf-8")
        == '{"a":[1,2],"b":"é"}'
    )


def test_render_body_passes_invalid_json_through_as_text() -> None:
    assert render_body(b"{oops", "application/json", complete=True, encoding="utf-8") == "{oops"


def test_render_body_truncates_long_text_and_says_so() -> None:
    text = render_body(b"y" * (MAX_OUTPUT_CHARS * 2), "text/plain", complete=True, encoding="utf-8")
    assert text.startswith("y" * MAX_OUTPUT_CHARS)
    assert len(text) < MAX_OUTPUT_CHARS + 40
    assert text.endswith("[response truncated]")


def test_render_body_marks_a_partly_read_reply_as_truncated() -> None:
    text = render_body(b"short", "text/plain", complete=False, encoding="utf-8")
    assert text.startswith("short") and text.endswith("[response truncated]")


# ---------------------------------------------------------------- real sockets


async def test_post_sends_arguments_as_json_and_returns_compact_json(
    echo_server, http_client
) -> None:
    tool = _tool(echo_server.url("/echo"))
    text = await call_webhook(tool, {"party": 4, "name": "Ana"}, client=http_client, env={})
    assert "\n" not in text and ": " not in text
    reply = json.loads(text)
    assert reply["method"] == "POST"
    assert reply["body"] == {"party": 4, "name": "Ana"}
    assert reply["headers"]["content-type"] == "application/json"


async def test_get_sends_arguments_as_query_params_merged_with_the_url(
    echo_server, http_client
) -> None:
    tool = _tool(echo_server.url("/echo?fixed=1"), method="GET")
    reply = json.loads(
        await call_webhook(tool, {"city": "Lisbon", "days": [1, 2]}, client=http_client, env={})
    )
    assert reply["method"] == "GET" and reply["body"] is None
    assert reply["query"] == [["fixed", "1"], ["city", "Lisbon"], ["days", "1"], ["days", "2"]]


async def test_headers_come_from_the_named_environment_variables(echo_server, http_client) -> None:
    tool = _tool(echo_server.url("/echo"), headers_from_env={"X-Api-Key": "BOOKING_KEY"})
    reply = json.loads(
        await call_webhook(tool, {}, client=http_client, env={"BOOKING_KEY": "k-123"},
                           allowed_env=frozenset({"BOOKING_KEY"}))
    )
    assert reply["headers"]["x-api-key"] == "k-123"


async def test_missing_header_variable_fails_before_any_request(echo_server, http_client) -> None:
    tool = _tool(echo_server.url("/echo"),
                 headers_from_env={"X-Api-Key": "TOOL_SECRET_BOOKING_KEY"})
    with pytest.raises(ToolError, match="TOOL_SECRET_BOOKING_KEY"):
        await call_webhook(tool, {}, client=http_client, env={})
    assert echo_server.requests == []


async def test_slow_reply_times_out_with_a_message(echo_server, http_client) -> None:
    tool = _tool(echo_server.url("/slow"), timeout_seconds=0.2)
    with pytest.raises(ToolError, match=r"no reply within 0\.2 seconds"):
        await call_webhook(tool, {}, client=http_client, env={})


async def test_http_error_status_is_an_error_naming_the_status_and_body(
    echo_server, http_client
) -> None:
    tool = _tool(echo_server.url("/status/500"))
    with pytest.raises(ToolError) as info:
        await call_webhook(tool, {}, client=http_client, env={})
    assert "HTTP 500" in str(info.value)
    assert "the backend broke" in str(info.value)


async def test_redirects_are_not_followed(echo_server, http_client) -> None:
    tool = _tool(echo_server.url("/redirect"))
    with pytest.raises(ToolError, match="HTTP 302 redirect to /echo"):
        await call_webhook(tool, {}, client=http_client, env={})
    assert echo_server.requests == ["/redirect"]


async def test_plain_text_reply_is_returned_as_is(echo_server, http_client) -> None:
    text = await call_webhook(_tool(echo_server.url("/text")), {}, client=http_client, env={})
    assert text == "the table is booked for 7 pm"


async def test_empty_reply_says_it_succeeded(echo_server, http_client) -> None:
    text = await call_webhook(_tool(echo_server.url("/empty")), {}, client=http_client, env={})
    assert "204" in text and "no content" in text


async def test_big_reply_is_truncated_for_the_model(echo_server, http_client) -> None:
    text = await call_webhook(_tool(echo_server.url("/big")), {}, client=http_client, env={})
    assert text.startswith("x" * MAX_OUTPUT_CHARS)
    assert text.endswith("[response truncated]")
    assert len(text) < MAX_OUTPUT_CHARS + 40


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]"])
async def test_loopback_is_refused_unless_allowed(echo_server, http_client, host: str) -> None:
    tool = _tool(echo_server.url("/echo", host=host), allow_private_network=False)
    with pytest.raises(BlockedAddressError) as info:
        await call_webhook(tool, {}, client=http_client, env={})
    assert "loopback" in str(info.value)
    assert "allow_private_network" in str(info.value)
    assert echo_server.requests == []


async def test_loopback_is_reached_when_the_tool_allows_private_networks(
    echo_server, http_client
) -> None:
    tool = _tool(echo_server.url("/echo"), allow_private_network=True)
    reply = json.loads(await call_webhook(tool, {}, client=http_client, env={}))
    assert reply["method"] == "POST"
    assert echo_server.requests == ["/echo"]


async def test_plain_http_connects_to_the_checked_address_without_a_second_lookup(
    echo_server, http_client
) -> None:
    """The name below does not exist; the request can only arrive if the
    connection goes to the address the resolver returned, with the name kept
    as the Host header."""
    lookups: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        lookups.append(host)
        return ["127.0.0.1"]

    tool = _tool(f"http://booking.invalid:{echo_server.port}/echo")
    reply = json.loads(await call_webhook(tool, {}, client=http_client, env={}, resolver=resolve))
    assert reply["headers"]["host"] == f"booking.invalid:{echo_server.port}"
    assert lookups == ["booking.invalid"]


async def test_next_checked_address_is_tried_when_one_refuses_the_connection(
    echo_server, http_client
) -> None:
    async def resolve(host: str, port: int) -> list[str]:
        return ["::1", "127.0.0.1"]  # the server listens on IPv4 only

    tool = _tool(f"http://booking.invalid:{echo_server.port}/echo")
    reply = json.loads(await call_webhook(tool, {}, client=http_client, env={}, resolver=resolve))
    assert reply["method"] == "POST"


async def test_connection_refused_is_an_error_naming_the_host(http_client) -> None:
    import socket

    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    tool = _tool(f"http://127.0.0.1:{port}/x")
    with pytest.raises(ToolError, match=r"could not connect to 127\.0\.0\.1"):
        await call_webhook(tool, {}, client=http_client, env={})


def test_env_headers_refuse_a_platform_setting_even_when_allow_listed() -> None:
    with pytest.raises(ToolError, match="TWILIO_AUTH_TOKEN is one of the platform's own"):
        env_headers({"X-Leak": "TWILIO_AUTH_TOKEN"}, {"TWILIO_AUTH_TOKEN": "secret"},
                    frozenset({"TWILIO_AUTH_TOKEN"}))
    with pytest.raises(ToolError, match="not an allowed variable"):
        env_headers({"X-Leak": "HOME"}, {"HOME": "/root"})


async def test_a_webhook_never_sends_a_platform_secret(echo_server, http_client) -> None:
    tool = _tool(echo_server.url("/echo"), headers_from_env={"X-Leak": "SESSION_SECRET"})
    with pytest.raises(ToolError, match="SESSION_SECRET"):
        await call_webhook(tool, {}, client=http_client, env={"SESSION_SECRET": "s3cret"},
                           allowed_env=frozenset({"SESSION_SECRET"}))
    assert echo_server.requests == []
