"""Outbound calls: the dial service every way of placing a call goes through.

    call_id = await platform.dialer.dial(DialRequest(agent="reminders", to_number="+15551234567",
                                                     params={"name": "Ada"}))

raises ``DialRefused(reason, message, call_id)``; see ``dialer.py``.
"""

from agentplatform.outbound.dialer import Dialer, DialRefusal, DialRefused
from agentplatform.outbound.request import DialRequest

__all__ = ["DialRefusal", "DialRefused", "DialRequest", "Dialer"]
