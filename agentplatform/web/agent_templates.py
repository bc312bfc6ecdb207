"""The starting points the "New agent" screen offers, and which of them can take a call
with the keys this server has.

Each template is an agent file shipped in ``new_agents/`` (data, not code): a working
agent with comments explaining it, whose ``name`` and ``description`` the screen fills
in. The screen preselects the first template in :data:`PREFERENCE` that can run here,
so a new agent answers its first call without the admin hunting for a key; with no
key at all that is the offline desk.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

FOLDER = Path(__file__).with_name("new_agents")


@dataclass(frozen=True, slots=True)
class AgentTemplate:
    key: str  # the file's stem in new_agents/
    label: str
    summary: str

    @property
    def path(self) -> Path:
        return FOLDER / f"{self.key}.yaml"


# In the order the screen lists them.
TEMPLATES: tuple[AgentTemplate, ...] = (
    AgentTemplate("offline-desk", "Offline desk",
                  "Answers with rules you write, hears and speaks with local engines: "
                  "no key, no internet."),
    AgentTemplate("realtime-desk", "Realtime desk",
                  "A realtime speech model answers the phone, following your prompt."),
    AgentTemplate("outbound-caller", "Outbound caller",
                  "Calls people (from its page, the API or a campaign) and speaks first."),
)
BY_KEY = {t.key: t for t in TEMPLATES}
# Which runnable template is preselected: a realtime desk when its key is there, since
# that is what most admins come for; otherwise the desk that needs nothing.
PREFERENCE = ("realtime-desk", "offline-desk", "outbound-caller")


def template_text(key: str, *, name: str, description: str) -> str:
    """The template's file with its name and description filled in, each as one quoted
    line (a typed newline or colon cannot add a field of its own)."""
    text = BY_KEY[key].path.read_text(encoding="utf-8")
    return (text.replace("name: NAME", f"name: {_quoted(name)}", 1)
                .replace("description: DESCRIPTION", f"description: {_quoted(description)}", 1))


def _quoted(value: str) -> str:
    one_line = " ".join(value.split())
    return '"' + one_line.replace("\\", "\\\\").replace('"', '\\"') + '"'


def preferred(missing: dict[str, list[str]]) -> str:
    """The first template in :data:`PREFERENCE` with nothing missing."""
    return next((k for k in PREFERENCE if not missing.get(k)), PREFERENCE[0])
