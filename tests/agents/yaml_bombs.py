"""Agent files built to be expensive: the review's alias bomb, and the worst file that
stays under the limits (for the test that edits it while a call runs)."""

from __future__ import annotations

from agentplatform.agents.yamllimits import MAX_NODES


def alias_bomb(name: str = "bomb", levels: int = 7, width: int = 9) -> str:
    """A few hundred bytes: each level is ``&aN [*aN-1, ...]``, hidden in a webhook
    tool's ``parameters``; written out, 7 levels of 9 are 4.8 million strings."""
    lines = [f"name: {name}", "model: openai/gpt-realtime", "tools:", "  - type: webhook",
             "    name: lookup", "    url: https://example.com/lookup", "    parameters:",
             "      type: object",
             "      a0: &a0 [" + ",".join(["lol"] * width) + "]"]
    for level in range(1, levels + 1):
        refs = ",".join([f"*a{level - 1}"] * width)
        lines.append(f"      a{level}: &a{level} [{refs}]")
    return "\n".join(lines) + "\n"


def worst_under_the_limits(name: str, *, phone: str = "+15555550177") -> str:
    """A valid agent as costly to check as the limits allow: nearly ``MAX_NODES`` values
    written out (every one costs the parser and validation), in a webhook tool's
    ``parameters``."""
    count = MAX_NODES - 40
    items = "".join(f"        - v{i}\n" for i in range(count))
    return (f"name: {name}\nmodel: openai/gpt-realtime\nphone_numbers: [\"{phone}\"]\n"
            "tools:\n  - type: webhook\n    name: lookup\n    url: https://example.com/x\n"
            "    parameters:\n      type: object\n      enum_values:\n" + items)
