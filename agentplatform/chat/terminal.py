"""``agentplatform chat AGENT``: chat with an agent in the terminal.

In-process by default (the agent file, the catalog and the settings of this machine,
no server needed); with ``--url`` it talks to a running server's
``POST /api/agents/{name}/chat`` instead (``--api-key`` or ``API_KEY`` when that server
wants one). Each line typed is one message; ``--message`` sends one and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any, TextIO

import httpx

from agentplatform.chat.session import ChatSession, open_chat
from agentplatform.web.chat_routes import event_json

Printer = Callable[[str], None]


def render_event(event: dict[str, Any], out: TextIO) -> None:
    """One streamed event, as a person reads it in a terminal."""
    kind = event["type"]
    if kind == "delta":
        out.write(event["text"])
    elif kind == "tool_call":
        out.write(f"\n  [tool] {event['name']}({event['arguments'] or '{}'})\n")
    elif kind == "tool_result":
        status = "" if event["ok"] else " (failed)"
        note = f" [{event['note']}]" if event.get("note") else ""
        out.write(f"  [tool] {event['name']} -> {event['output']}{status}{note}\n")
    elif kind == "done":
        out.write("\n")
    elif kind == "error":
        out.write(f"\n  [error] {event['message']}\n")
    out.flush()


async def _local_turns(agent_name: str) -> tuple[Callable[[str], AsyncIterator[dict[str, Any]]],
                                                  ChatSession, httpx.AsyncClient]:
    from agentplatform.agents.store import AgentStore
    from agentplatform.catalog import load_catalog
    from agentplatform.config import get_settings

    settings = get_settings()
    catalog = load_catalog()
    store = AgentStore(settings.agents_dir, catalog, settings)
    agent = store.get(agent_name)
    if agent is None:
        problems = store.problems.get(str(store.path_for(agent_name)), [])
        detail = "; ".join(str(i) for i in problems) or f"no file {agent_name}.yaml in " \
            f"{settings.agents_dir}"
        raise SystemExit(f"cannot chat with {agent_name!r}: {detail}")
    http = httpx.AsyncClient(timeout=30.0)
    chat = await open_chat(agent.spec, catalog=catalog, settings=settings, http=http,
                           conversation_id="cli")

    async def turn(message: str) -> AsyncIterator[dict[str, Any]]:
        async for event in chat.ask(message):
            yield event_json(event)

    return turn, chat, http


def _remote_turns(url: str, agent: str, api_key: str) -> tuple[
        Callable[[str], AsyncIterator[dict[str, Any]]], httpx.AsyncClient]:
    http = httpx.AsyncClient(base_url=url.rstrip("/"), timeout=130.0,
                             headers={"X-API-Key": api_key} if api_key else {})
    state: dict[str, str | None] = {"conversation": None}

    async def turn(message: str) -> AsyncIterator[dict[str, Any]]:
        body = {"message": message, "conversation_id": state["conversation"]}
        async with http.stream("POST", f"/api/agents/{agent}/chat", json=body) as response:
            if response.status_code != 200:
                detail = (await response.aread()).decode(errors="replace")
                yield {"type": "error", "message": f"HTTP {response.status_code}: {detail}"}
                return
            async for line in response.aiter_lines():
                if line.strip():
                    event = json.loads(line)
                    if event["type"] == "conversation":
                        state["conversation"] = event["id"]
                    yield event

    return turn, http


async def run_chat_command(args: argparse.Namespace, *, stdin: TextIO = sys.stdin,
                           out: TextIO = sys.stdout) -> int:
    chat: ChatSession | None = None
    if args.url:
        turn, http = _remote_turns(args.url, args.agent, args.api_key or os.environ.get(
            "API_KEY", ""))
    else:
        turn, chat, http = await _local_turns(args.agent)
        if chat.slow_note:
            out.write(f"({chat.slow_note})\n")
        if chat.greeting:
            out.write(f"{args.agent}: {chat.greeting}\n")
    failed = False
    try:
        messages = [args.message] if args.message else None
        while True:
            if messages is not None:
                if not messages:
                    break
                message = messages.pop(0)
            else:
                out.write("you: ")
                out.flush()
                line = await asyncio.to_thread(stdin.readline)
                if not line:
                    break
                message = line.strip()
                if not message:
                    continue
            out.write(f"{args.agent}: ")
            async for event in turn(message):
                if event["type"] == "conversation":
                    continue
                failed = failed or event["type"] == "error"
                render_event(event, out)
    finally:
        if chat is not None:
            await chat.close()
        await http.aclose()
    return 1 if failed and args.message else 0
