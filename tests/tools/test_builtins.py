from __future__ import annotations

import pytest

from agentplatform.agents.spec import EndCallTool, TransferCallTool
from agentplatform.errors import ToolError
from agentplatform.tools.builtins import (
    EndCall,
    Transfer,
    end_call,
    end_call_spec_parameters,
    transfer_call,
    transfer_spec_parameters,
)

DESKS = {"sales": "+14155550100", "support": "+14155550111"}


def test_end_call_decides_to_hang_up_and_tells_the_model_to_say_goodbye() -> None:
    output, action = end_call(EndCallTool(), {"reason": "caller is done"})
    assert action == EndCall(reason="caller is done")
    assert "goodbye" in output.lower()


def test_end_call_needs_no_arguments() -> None:
    _, action = end_call(EndCallTool(), {})
    assert action == EndCall()


def test_transfer_picks_the_number_of_the_named_destination() -> None:
    tool = TransferCallTool(destinations=DESKS)
    output, action = transfer_call(tool, {"destination": "support", "reason": "billing"})
    assert action == Transfer(number="+14155550111", destination="support", reason="billing")
    assert "support" in output
    assert "+1415" not in output  # the model never needs the number


@pytest.mark.parametrize("arguments", [{"destination": "legal"}, {}, {"destination": 3}])
def test_transfer_to_an_unknown_destination_lists_the_valid_ones(arguments: dict) -> None:
    with pytest.raises(ToolError) as info:
        transfer_call(TransferCallTool(destinations=DESKS), arguments)
    assert "sales" in str(info.value) and "support" in str(info.value)


def test_transfer_schema_offers_exactly_the_destination_names() -> None:
    schema = transfer_spec_parameters(TransferCallTool(destinations=DESKS))
    assert schema["properties"]["destination"]["enum"] == ["sales", "support"]
    assert schema["required"] == ["destination"]
    assert "+14155550100" not in str(schema)


def test_end_call_schema_is_an_object_with_only_an_optional_reason() -> None:
    schema = end_call_spec_parameters()
    assert schema["type"] == "object"
    assert set(schema["properties"]) == {"reason"}
    assert "required" not in schema


def test_send_dtmf_decides_to_press_the_validated_keys() -> None:
    from agentplatform.agents.spec import SendDtmfTool
    from agentplatform.tools.builtins import SendDtmf, send_dtmf

    output, action = send_dtmf(SendDtmfTool(), {"digits": "1 w 2#"})
    assert action == SendDtmf("1w2#") and "1 w 2 #" in output


@pytest.mark.parametrize("arguments", [{}, {"digits": 5}, {"digits": "9x"}, {"digits": "1" * 65}])
def test_send_dtmf_refuses_anything_but_a_string_of_keys(arguments) -> None:
    from agentplatform.agents.spec import SendDtmfTool
    from agentplatform.tools.builtins import send_dtmf

    with pytest.raises(ToolError):
        send_dtmf(SendDtmfTool(), arguments)


def test_send_dtmf_is_offered_to_the_model_with_its_keys_schema() -> None:
    from agentplatform.agents.spec import AgentSpec, SendDtmfTool
    from agentplatform.tools import tool_specs

    agent = AgentSpec(name="ivr", model="openai/gpt-realtime", tools=[SendDtmfTool()])
    [spec] = tool_specs(agent)
    assert spec.name == "send_dtmf" and spec.parameters["required"] == ["digits"]
