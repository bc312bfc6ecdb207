"""The app on loopback (real uvicorn) or in-process with a chosen client address."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import httpx
import pytest

from agentplatform.app import create_app
from agentplatform.testing.stack import local_server, simulated_settings

AGENT_YAML = """\
# The front desk, written by hand: these comments must survive an edit in the screen.
name: front-desk
description: Answers the main line.
model: openai/gpt-realtime
voice: marin            # one of the model's voices
temperature: 0.8
greeting: Thanks for calling, how can I help?
prompt: |
  You answer the phone for a clinic.
  Be brief.
phone_numbers:
  - "+15555550100"
tools:
  # Looks up free slots.
  - type: webhook
    name: check_availability
    description: Find open slots.
    url: https://example.com/slots
    parameters:
      type: object
      properties:
        day: {type: string}
  - type: end_call
"""


def write_agent(directory: Path, text: str = AGENT_YAML, name: str = "front-desk") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.yaml"
    path.write_text(text)
    return path


def settings_for(tmp_path: Path, **overrides):
    return simulated_settings(agents_dir=tmp_path / "agents",
                              database_url=f"sqlite:///{tmp_path / 'calls.db'}", **overrides)


@pytest.fixture
def agent_file(tmp_path: Path) -> Path:
    return write_agent(tmp_path / "agents")


@contextlib.asynccontextmanager
async def served(tmp_path: Path, **overrides):
    """The app served on a loopback port, and a client that keeps cookies."""
    async with local_server(settings_for(tmp_path, **overrides)) as server:
        async with httpx.AsyncClient(base_url=server.base_url, follow_redirects=False) as client:
            client.server = server  # type: ignore[attr-defined]
            yield client


@contextlib.asynccontextmanager
async def remote(tmp_path: Path, client_host: str = "203.0.113.7", **overrides):
    """The app in-process, reached from ``client_host`` (a machine that is not this one)
    under the name ``admin.example``, which the server is told to answer to."""
    app = create_app(settings_for(tmp_path, **{"allowed_hosts": "admin.example", **overrides}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=(client_host, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://admin.example",
                                     follow_redirects=False) as client:
            yield client


CSRF = re.compile(r'name="csrf[_-]token" (?:value|content)="([^"]+)"')
BASE = re.compile(r'name="base" value="([^"]+)"')


def csrf_of(html: str) -> str:
    match = CSRF.search(html)
    assert match, "the page has no CSRF token"
    return match.group(1)


def base_of(html: str) -> str:
    match = BASE.search(html)
    assert match, "the page has no base digest"
    return match.group(1)
