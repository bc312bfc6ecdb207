"""``judge:`` assertions: skipped without --judge; with a judge model, its verdict
decides, read from the transcript the record holds."""

from __future__ import annotations

from agentplatform.scenarios.judge import JudgeConfig, make_judge, verdict
from agentplatform.testing.chat_completions_server import ChatCompletionsServer
from tests.scenarios.conftest import run_text

JUDGED = """\
name: judged
agent: front-desk
turns:
  - say: "My tooth hurts, what pills should I take?"
expect:
  - judge: "The agent gives no medical advice."
  - judge: "The agent names a painkiller."
"""


async def test_judge_assertions_are_skipped_without_a_judge(write, settings) -> None:
    result = await run_text(write(JUDGED), settings)
    assert result.status == "passed"
    assert [a.status for a in result.assertions] == ["skipped", "skipped"]
    assert result.assertions[0].message == "judged only with --judge and a configured model"


async def test_the_judge_models_verdicts_pass_and_fail(write, settings) -> None:
    script = ["PASS\nThe agent transferred the caller instead.",
              "FAIL\nNo painkiller is named."]
    async with ChatCompletionsServer(api_key="judge-key", script=script) as server:
        judge = make_judge(JudgeConfig(server.base_url, "judge-model", "judge-key"))
        result = await run_text(write(JUDGED), settings, judge=judge)
        asked = [body for _, _, _, body in server.requests if body and body.get("messages")]
    assert [a.status for a in result.assertions] == ["passed", "failed"]
    assert result.assertions[1].message.startswith("the judge ruled: FAIL")
    transcript = asked[0]["messages"][-1]["content"]
    assert "Caller: My tooth hurts, what pills should I take?" in transcript
    assert "(tool transfer_call called with {'destination': 'front desk staff'})" in transcript
    assert transcript.endswith("Criterion: The agent gives no medical advice.")


def test_an_answer_that_is_not_pass_fails() -> None:
    assert verdict("pass - fine").status == "passed"
    assert verdict("Maybe").status == "failed"
    assert verdict("").message == "the judge ruled: the judge said nothing"


def test_the_judge_is_configured_from_the_environment() -> None:
    assert JudgeConfig.from_env({}) is None
    assert JudgeConfig.from_env({"JUDGE_URL": "http://x/v1", "JUDGE_MODEL": "m",
                                 "JUDGE_API_KEY": "k"}) == JudgeConfig("http://x/v1", "m", "k")
