"""Creating an agent from a template: every template makes an agent that loads, the
screen preselects one this server can run, and a typed name cannot smuggle in fields."""

from __future__ import annotations

import re

import pytest

from agentplatform.agents.yamlio import load_document, to_plain
from agentplatform.web.agent_templates import TEMPLATES

from .conftest import csrf_of, served


def preselected(html: str) -> str:
    found = re.findall(r'name="template" value="([^"]+)" checked', html)
    assert len(found) == 1, found
    return found[0]


@pytest.mark.parametrize("template", [t.key for t in TEMPLATES])
async def test_each_template_creates_an_agent_that_loads_without_errors(tmp_path, template):
    async with served(tmp_path) as client:
        page = await client.get("/agents/new")
        made = await client.post("/agents/new", data={
            "csrf_token": csrf_of(page.text), "name": "made", "template": template,
            "description": 'Says "hi": twice'})
        listing = (await client.get("/")).text
    assert made.status_code == 303, made.text
    plain = to_plain(load_document((tmp_path / "agents" / "made.yaml").read_text(), file="x"))
    assert plain["name"] == "made" and plain["description"] == 'Says "hi": twice'
    assert 'data-agent="made"' in listing


async def test_a_local_offline_agent_can_be_created(tmp_path):
    async with served(tmp_path) as client:
        page = await client.get("/agents/new")
        made = await client.post("/agents/new", data={
            "csrf_token": csrf_of(page.text), "name": "desk", "template": "offline-desk",
            "model": "local/offline"})
    assert made.status_code == 303, made.text
    plain = to_plain(load_document((tmp_path / "agents" / "desk.yaml").read_text(), file="x"))
    assert plain["model"] == "local/offline" and plain["voice_streaming"] is False


async def test_with_no_keys_the_offline_desk_is_preselected_and_the_others_say_what_they_need(
        tmp_path):
    async with served(tmp_path, openai_api_key="") as client:
        html = (await client.get("/agents/new")).text
    assert preselected(html) == "offline-desk"
    assert 'data-missing="realtime-desk"' in html and "OPENAI_API_KEY" in html
    assert 'data-ready="offline-desk"' in html


async def test_with_an_openai_key_the_realtime_desk_is_preselected(tmp_path):
    async with served(tmp_path, openai_api_key="sk-test") as client:
        html = (await client.get("/agents/new")).text
    assert preselected(html) == "realtime-desk"
    assert 'data-ready="realtime-desk"' in html


async def test_a_name_with_a_newline_cannot_add_a_field(tmp_path):
    async with served(tmp_path) as client:
        page = await client.get("/agents/new")
        refused = await client.post("/agents/new", data={
            "csrf_token": csrf_of(page.text), "name": "x\nmodel: local/offline",
            "template": "realtime-desk"})
    assert refused.status_code == 422
    assert list((tmp_path / "agents").glob("*.yaml")) == []
