"""Twilio: the voice webhook and TwiML, Media Streams over a WebSocket, and REST
call control, turned into ``CallAudio`` for the bridge. Its plug-in is
``plugin.TwilioCarrier``; the stream tokens it spends are the generic ones in
``carriers/tokens.py``."""

from agentplatform.carriers.twilio.control import TwilioCallControl
from agentplatform.carriers.twilio.plugin import TwilioCarrier
from agentplatform.carriers.twilio.routes import build_router
from agentplatform.carriers.twilio.stream import TwilioCallAudio

__all__ = ["TwilioCallAudio", "TwilioCallControl", "TwilioCarrier", "build_router"]
