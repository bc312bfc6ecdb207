"""Webhook tool mocks: the scenario's answers, served over a real loopback socket.

A scenario runs offline, so its agent's webhook tools must not reach the services
they name. Rather than a hook inside the tool runner, the run uses a copy of the
agent file whose webhook URLs point here (``POST /tools/{name}``, loopback allowed,
secret headers dropped) and this server answers from the scenario's ``mocks:``: the
first mock for the tool whose ``args`` are a subset of the call's arguments gives the
reply (JSON) and status. So the platform's whole webhook path runs (request built,
address checked, reply read and cut) in text and call mode alike.

A tool with no matching mock answers 501 with a sentence saying so: the tool fails,
as an unreachable service would, and the record shows it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from agentplatform.agents.yamlio import REMOVE, read_document, set_fields, to_plain
from agentplatform.scenarios.assertions import subset
from agentplatform.scenarios.spec import Mock
from agentplatform.testing.loopback import LoopbackServer


class MockWebhooks:
    """``async with MockWebhooks(mocks) as server:`` then ``server.url_for(name)``."""

    def __init__(self, mocks: list[Mock]) -> None:
        self.mocks = list(mocks)
        self.calls: list[tuple[str, dict[str, Any]]] = []  # (tool, arguments) as received
        app = Starlette(routes=[Route("/tools/{name}", self._answer,
                                      methods=["GET", "POST", "PUT", "PATCH", "DELETE"])])
        self._server = LoopbackServer(app)

    def url_for(self, tool: str) -> str:
        return f"{self._server.base_url}/tools/{tool}"

    async def __aenter__(self) -> Self:
        await self._server.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._server.stop()

    def match(self, tool: str, arguments: Mapping[str, Any]) -> Mock | None:
        for mock in self.mocks:
            if mock.tool == tool and subset(mock.args, dict(arguments)):
                return mock
        return None

    async def _answer(self, request: Request) -> Response:
        name = request.path_params["name"]
        if request.method in ("POST", "PUT", "PATCH"):
            try:
                arguments = json.loads(await request.body() or b"{}")
            except ValueError:
                return PlainTextResponse("the tool's body was not JSON", status_code=400)
        else:
            arguments = dict(request.query_params)
        if not isinstance(arguments, dict):
            arguments = {}
        self.calls.append((name, arguments))
        mock = self.match(name, arguments)
        if mock is None:
            return PlainTextResponse(f"no mock in the scenario answers {name} with "
                                     f"{json.dumps(arguments)}", status_code=501)
        return JSONResponse(mock.returns, status_code=mock.status)


def webhook_tools(path: Path) -> list[tuple[int, str]]:
    """(index in ``tools``, name) of each webhook tool in an agent file."""
    data = to_plain(read_document(path)) or {}
    found = []
    for index, tool in enumerate(data.get("tools") or []):
        if isinstance(tool, dict) and tool.get("type", "webhook") == "webhook" and "name" in tool:
            found.append((index, str(tool["name"])))
    return found


def mocked_agent_text(path: Path, mocks: MockWebhooks) -> str:
    """The agent file's text with every webhook tool pointed at ``mocks``."""
    changes: dict[str, Any] = {}
    for index, name in webhook_tools(path):
        changes[f"tools[{index}].url"] = mocks.url_for(name)
        changes[f"tools[{index}].allow_private_network"] = True
        changes[f"tools[{index}].headers_from_env"] = REMOVE
    text = path.read_text(encoding="utf-8")
    return set_fields(text, changes, file=str(path)) if changes else text
