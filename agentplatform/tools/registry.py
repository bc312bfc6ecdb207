"""An agent's tools: what the model is told about them, and running a call.

``tool_specs`` turns the agent's tool list into the provider-neutral
``ToolSpec``s every realtime adapter accepts. ``ToolRunner.run`` executes one
call the model made and never raises: whatever goes wrong becomes an outcome
with ``ok=False`` and a sentence the model can speak around ("the booking
service did not answer"), because a tool failure must not end a phone call.

The runner is async and does no blocking work, so the bridge runs each call as
its own task and the audio keeps flowing while a webhook is out.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from agentplatform.agents import envpolicy
from agentplatform.agents.spec import (
    AgentSpec, EndCallTool, SendDtmfTool, Tool, TransferCallTool, WebhookTool,
)
from agentplatform.config import get_settings
from agentplatform.errors import ToolError
from agentplatform.realtime.base import ToolSpec
from agentplatform.tools import builtins
from agentplatform.tools.builtins import ToolAction
from agentplatform.tools.netguard import Resolver, system_resolver
from agentplatform.tools.webhook import call_webhook

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    """The result of one tool call.

    ``output`` goes back to the model as the function result. ``action`` is set
    only by built-ins; the bridge performs it (the runner only decides).
    """

    name: str
    output: str
    ok: bool
    duration_ms: float
    action: ToolAction | None = None


def _tools_by_name(agent: AgentSpec) -> dict[str, Tool]:
    tools: dict[str, Tool] = {}
    for tool in agent.tools:
        if tool.name in tools:
            raise ValueError(f"agent {agent.name!r} has two tools named {tool.name!r}")
        tools[tool.name] = tool
    return tools


# Tool type -> its JSON-schema parameters. Webhook schemas are copied so an
# adapter that edits its copy cannot change the agent.
_PARAMETERS: dict[str, Callable[[Any], dict[str, Any]]] = {
    "webhook": lambda tool: copy.deepcopy(tool.parameters),
    "end_call": lambda tool: builtins.end_call_spec_parameters(),
    "transfer_call": builtins.transfer_spec_parameters,
    "send_dtmf": lambda tool: builtins.send_dtmf_spec_parameters(),
}


def _spec(tool: Tool) -> ToolSpec:
    parameters = _PARAMETERS[tool.type](tool)
    return ToolSpec(name=tool.name, description=tool.description, parameters=parameters)


def tool_specs(agent: AgentSpec) -> list[ToolSpec]:
    """The functions the model may call, in the order the agent lists them.

    Raises ``ValueError`` if two tools share a name (no provider accepts that).
    """
    return [_spec(tool) for tool in _tools_by_name(agent).values()]


def parse_arguments(arguments_json: str) -> dict[str, Any]:
    """The model's argument text as an object. Empty text means no arguments
    (some models send ``""`` for a function without parameters)."""
    if not arguments_json.strip():
        return {}
    try:
        value = json.loads(arguments_json)
    except ValueError as exc:
        raise ToolError(f"the arguments were not valid JSON ({exc})") from exc
    if not isinstance(value, dict):
        raise ToolError(f"the arguments must be a JSON object, not {type(value).__name__}")
    return value


_Result = tuple[str, ToolAction | None]
_Handler = Callable[[Any, dict[str, Any]], Awaitable[_Result]]


class ToolRunner:
    """Runs the model's tool calls for one agent (one per call is fine; it
    holds no per-call state beyond what it is given)."""

    def __init__(
        self,
        agent: AgentSpec,
        *,
        http_client: httpx.AsyncClient,
        env: Mapping[str, str] = os.environ,
        resolver: Resolver = system_resolver,
        allowed_env: frozenset[str] | None = None,
    ) -> None:
        """``allowed_env``: the ``TOOL_ENV_ALLOWLIST`` names; None reads the settings."""
        self._agent = agent
        self._allowed_env = envpolicy.allowlist(get_settings()) if allowed_env is None \
            else allowed_env
        self._tools = _tools_by_name(agent)
        self._client = http_client
        self._env = env
        self._resolver = resolver
        self._handlers: dict[str, _Handler] = {
            "webhook": self._run_webhook,
            "end_call": self._run_end_call,
            "transfer_call": self._run_transfer,
            "send_dtmf": self._run_send_dtmf,
        }

    @property
    def names(self) -> list[str]:
        return list(self._tools)

    async def run(self, name: str, arguments_json: str) -> ToolOutcome:
        """Execute one call. Never raises (except cancellation)."""
        started = time.perf_counter()

        def outcome(output: str, ok: bool, action: ToolAction | None = None) -> ToolOutcome:
            elapsed = (time.perf_counter() - started) * 1000.0
            return ToolOutcome(name, output, ok, round(elapsed, 1), action)

        tool = self._tools.get(name)
        if tool is None:
            known = ", ".join(self._tools) or "none"
            return outcome(f"There is no tool named {name!r}. Available tools: {known}.", False)
        try:
            arguments = parse_arguments(arguments_json)
            output, action = await self._handlers[tool.type](tool, arguments)
        except ToolError as exc:
            log.info("tool %s failed: %s", name, exc)
            return outcome(f"The {name} tool failed: {exc}", False)
        except Exception:
            log.exception("tool %s raised unexpectedly", name)
            return outcome(f"The {name} tool failed unexpectedly.", False)
        return outcome(output, True, action)

    # ------------------------------------------------------------ handlers

    async def _run_webhook(self, tool: WebhookTool, arguments: dict[str, Any]) -> _Result:
        output = await call_webhook(
            tool, arguments, client=self._client, env=self._env, resolver=self._resolver,
            allowed_env=self._allowed_env,
        )
        return output, None

    async def _run_end_call(self, tool: EndCallTool, arguments: dict[str, Any]) -> _Result:
        return builtins.end_call(tool, arguments)

    async def _run_transfer(self, tool: TransferCallTool, arguments: dict[str, Any]) -> _Result:
        return builtins.transfer_call(tool, arguments)

    async def _run_send_dtmf(self, tool: SendDtmfTool, arguments: dict[str, Any]) -> _Result:
        return builtins.send_dtmf(tool, arguments)
