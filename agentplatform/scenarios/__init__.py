"""Conversation scenarios: test an agent like code, as text and as a phone call.

A scenario file (``spec.py``) says what the caller does turn by turn and what must
hold afterwards. ``runner.py`` plays it as text (the chat path) or as a simulated
phone call (Twilio Media Streams, the local voice as the caller), offline, and the
assertions (``assertions.py``) read the call record either way leaves.
"""
