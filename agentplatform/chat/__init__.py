"""Chat with an agent over text: the same prompt, model and tools as on the phone.

``session.py`` drives one conversation (a ``TextSession`` plus the agent's tools);
``audio_bridge.py`` serves models that only speak (the text is synthesized and the
spoken answer transcribed); ``conversations.py`` keeps conversations by id for the
web panel and the API.
"""

from agentplatform.chat.session import (
    ChatDelta, ChatDone, ChatError, ChatEvent, ChatSession, ChatToolCall, ChatToolResult,
    open_chat,
)

__all__ = ["ChatDelta", "ChatDone", "ChatError", "ChatEvent", "ChatSession", "ChatToolCall",
           "ChatToolResult", "open_chat"]
