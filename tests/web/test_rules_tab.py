"""The offline agent's rules edited on their own tab, and a notice on the prompt when
the rules, not a language model, answer the callers."""

from __future__ import annotations

from agentplatform.agents.yamlio import load_document, to_plain

from .conftest import served, write_agent
from .test_agents_admin import open_form

DESK = """\
# The offline desk; this comment stays.
name: desk
model: local/offline
voice_streaming: false
prompt: You answer the phone.
rules:
  - match: "hours|open"
    reply: We are open nine to five.
  - match: "bye"
    reply: Goodbye!
    tool: {name: end_call}
fallback_reply: Sorry?
tools:
  - type: end_call
"""


async def test_rules_are_shown_changed_added_and_removed_on_the_rules_tab(tmp_path):
    path = write_agent(tmp_path / "agents", DESK, name="desk")
    async with served(tmp_path, local_llm_url="") as client:
        html, data = await open_form(client, "desk")
        data["rules[0].reply"] = "We are open eight to six."
        data["rules[1].remove"] = "on"
        data["new_rule.match"] = "park"
        data["new_rule.reply"] = "Parking is free."
        data["fallback_reply"] = "Sorry, say that again?"
        saved = await client.post("/agents/desk", data=data)
    assert 'id="prompt-rules-note"' in html
    assert 'value="hours|open"' in html and 'name="rules[1].tool" value="end_call"' in html
    assert saved.status_code == 303, saved.text
    text = path.read_text()
    plain = to_plain(load_document(text, file="x"))
    assert plain["rules"] == [{"match": "hours|open", "reply": "We are open eight to six."},
                              {"match": "park", "reply": "Parking is free."}]
    assert plain["fallback_reply"] == "Sorry, say that again?"
    assert "# The offline desk; this comment stays." in text


async def test_a_bad_pattern_is_shown_beside_its_rule_and_nothing_is_saved(tmp_path):
    path = write_agent(tmp_path / "agents", DESK, name="desk")
    before = path.read_bytes()
    async with served(tmp_path, local_llm_url="") as client:
        _, data = await open_form(client, "desk")
        data["new_rule.match"] = "(unclosed"
        data["new_rule.reply"] = "Hm."
        data["rules[0].arguments"] = "{not json"
        data["rules[0].tool"] = "end_call"
        refused = await client.post("/agents/desk", data=data)
        data["rules[0].arguments"] = ""
        bad_pattern = await client.post("/agents/desk", data=data)
    assert refused.status_code == 422 and bad_pattern.status_code == 422
    assert path.read_bytes() == before
    assert 'data-error-for="rules[0].arguments"' in refused.text
    beside = bad_pattern.text.split('name="new_rule.match"')[1].split("</div>")[0]
    assert 'data-error-for="new_rule.match"' in beside and "regular expression" in beside
    assert 'class="tab-panel" data-panel="rules" >' in refused.text  # opens on the rules tab


async def test_a_prompt_driven_agent_shows_no_rules_notice(tmp_path):
    write_agent(tmp_path / "agents")
    async with served(tmp_path) as client:
        html, _ = await open_form(client)
    assert 'id="prompt-rules-note"' not in html
