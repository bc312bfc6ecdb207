"""The offline rules responder (not a language model): replies, tools, greeting, barge-in."""

from __future__ import annotations

import orjson
import pytest

from agentplatform.agents.spec import Rule, RuleTool
from agentplatform.realtime.base import ResponseDone, ToolCall
from agentplatform.text.base import TextDelta
from agentplatform.text.rules import GOODBYE_LINE, RulesSession, fill_output

from .conftest import Feed, text_of

RULES = [
    Rule(match=r"\b(hours|open)\b", reply="We are open nine to five. Anything else?"),
    Rule(match=r"book|appointment", reply="Let me check.",
         tool=RuleTool(name="find_slot", arguments={"day": "monday"}),
         after_tool="The first free slot is {output.slot} with {output.who.name}."),
    Rule(match=r"bye", tool=RuleTool(name="end_call")),
    Rule(match=r"open", reply="This rule is shadowed by the first."),
]
FALLBACK = "Sorry, I did not catch that."


@pytest.fixture
async def session():
    s = RulesSession(RULES, FALLBACK, instructions="You are the front desk.")
    await s.connect()
    yield s
    await s.close()


async def test_a_matching_rule_streams_its_reply_word_by_word(session: RulesSession) -> None:
    feed = Feed(session)
    await session.send_user("What are your HOURS?")
    events = await feed.response()
    deltas = [e for e in events if isinstance(e, TextDelta)]
    assert text_of(events) == "We are open nine to five. Anything else?"
    assert len(deltas) == 8  # one per word, so speech can start on the first sentence
    assert events[-1] == ResponseDone(status="completed", usage=None)
    assert session.history[-1] == {"role": "assistant",
                                   "content": "We are open nine to five. Anything else?"}


async def test_the_first_matching_rule_wins(session: RulesSession) -> None:
    feed = Feed(session)
    await session.send_user("are you open")
    assert text_of(await feed.response()).startswith("We are open")


async def test_no_match_says_the_fallback_reply(session: RulesSession) -> None:
    feed = Feed(session)
    await session.send_user("purple elephants")
    assert text_of(await feed.response()) == FALLBACK


async def test_a_rule_tool_is_called_then_after_tool_speaks_the_output(
        session: RulesSession) -> None:
    feed = Feed(session)
    await session.send_user("I'd like to book a visit")
    first = await feed.response()
    assert text_of(first) == "Let me check."
    calls = [e for e in first if isinstance(e, ToolCall)]
    assert len(calls) == 1 and calls[0].name == "find_slot"
    assert orjson.loads(calls[0].arguments) == {"day": "monday"}
    output = orjson.dumps({"slot": "10:30", "who": {"name": "Dr Lee"}}).decode()
    await session.send_tool_result(calls[0].call_id, "find_slot", output)
    second = await feed.response()
    assert text_of(second) == "The first free slot is 10:30 with Dr Lee."
    roles = [m["role"] for m in session.history]
    assert roles == ["system", "user", "assistant", "tool", "assistant"]
    assert session.history[2]["tool_calls"][0]["id"] == calls[0].call_id


async def test_tool_call_ids_are_unique_across_turns(session: RulesSession) -> None:
    feed = Feed(session)
    ids = []
    for _ in range(3):
        await session.send_user("bye")
        ids += [e.call_id for e in await feed.response() if isinstance(e, ToolCall)]
    assert len(ids) == 3 and len(set(ids)) == 3


async def test_the_greeting_is_said_verbatim(session: RulesSession) -> None:
    feed = Feed(session)
    await session.respond('Greet the caller now. Say exactly: "Hi, this is Acme, how can I help?"')
    assert text_of(await feed.response()) == "Hi, this is Acme, how can I help?"


async def test_other_instructions_get_a_polite_goodbye(session: RulesSession) -> None:
    feed = Feed(session)
    await session.respond("The time limit is reached: say goodbye briefly.")
    assert text_of(await feed.response()) == GOODBYE_LINE


async def test_cancel_mid_reply_stops_the_deltas(session: RulesSession) -> None:
    feed = Feed(session)
    await session.send_user("what are your hours")
    first = await feed.next()
    assert isinstance(first, TextDelta)
    await session.cancel()
    rest = await feed.response()
    assert rest[-1] == ResponseDone(status="cancelled", usage=None)
    spoken = first.text + text_of(rest)
    assert spoken != "We are open nine to five. Anything else?"
    # History keeps only what was streamed; a new turn answers normally.
    assert session.history[-1]["content"] == spoken
    await session.send_user("hours?")
    assert text_of(await feed.response()).startswith("We are open")


async def test_set_heard_trims_the_last_answer_in_history(session: RulesSession) -> None:
    feed = Feed(session)
    await session.send_user("hours")
    await feed.response()
    await session.set_heard("We are open")
    assert session.history[-1] == {"role": "assistant", "content": "We are open"}
    await session.set_heard("")
    assert session.history[-1]["role"] == "user"


def test_fill_output_takes_whole_output_fields_and_missing_fields() -> None:
    assert fill_output("Got {output}.", "plain text") == "Got plain text."
    assert fill_output("{output.items.1}", '{"items": ["a", "b"]}') == "b"
    assert fill_output("[{output.nope}]", '{"x": 1}') == "[]"
    assert fill_output("{output.x}", "not json") == ""


async def test_a_platform_note_is_answered_with_its_line_not_matched_against_the_rules(
        session: RulesSession) -> None:
    """A failed transfer's note names "appointment" desk words: matched as caller words it
    would call the tool again, and again; the rules say the note's line instead."""
    from agentplatform.bridge.call import TRANSFER_FAILED_NOTE

    feed = Feed(session)
    await session.send_user(TRANSFER_FAILED_NOTE.format(destination="the appointment desk"))
    events = await feed.response()
    assert not [e for e in events if isinstance(e, ToolCall)]
    assert text_of(events) == "I'm sorry, I couldn't put you through just now. How else can I help?"
    assert session.history[-2]["role"] == "system"


async def test_an_idle_prompt_asks_whether_the_caller_is_still_there(
        session: RulesSession) -> None:
    from agentplatform.bridge.call import IDLE_GOODBYE, IDLE_PROMPT

    feed = Feed(session)
    await session.respond(IDLE_PROMPT)
    assert text_of(await feed.response()) == "Are you still there?"
    await session.respond(IDLE_GOODBYE)
    assert "Goodbye" in text_of(await feed.response())
