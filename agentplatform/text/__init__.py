"""The text step: one conversation with a text model (the cascade's brain, and chat).

``base.py`` is the seam (``TextSession``, ``TextDelta``); one engine per module:
``rules.py`` (offline, not a language model), ``chat_completions.py`` (any
OpenAI-compatible endpoint), ``realtime_text.py`` (a realtime model in text modality);
``sessions.py`` picks one for an agent.
"""
