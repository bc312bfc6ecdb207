"""Tool execution for agents: HTTP webhook tools and the built-ins
(end_call, transfer_call, send_dtmf). ``tool_specs`` tells the model what it may call;
``ToolRunner`` runs a call and returns a ``ToolOutcome`` (never raises)."""

from agentplatform.tools.builtins import EndCall, SendDtmf, ToolAction, Transfer
from agentplatform.tools.netguard import BlockedAddressError
from agentplatform.tools.registry import ToolOutcome, ToolRunner, parse_arguments, tool_specs

__all__ = [
    "BlockedAddressError",
    "EndCall",
    "SendDtmf",
    "ToolAction",
    "ToolOutcome",
    "ToolRunner",
    "Transfer",
    "parse_arguments",
    "tool_specs",
]
