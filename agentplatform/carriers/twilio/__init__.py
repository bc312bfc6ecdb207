"""Twilio: the voice webhook and TwiML, Media Streams over a WebSocket, and REST
call control, turned into ``CallAudio`` for the bridge."""

from agentplatform.carriers.twilio.control import TwilioCallControl
from agentplatform.carriers.twilio.plugin import TwilioCarrier
from agentplatform.carriers.twilio.routes import build_router
from agentplatform.carriers.twilio.stream import TwilioCallAudio
from agentplatform.carriers.tokens import StreamTokens

__all__ = ["StreamTokens", "TwilioCallAudio", "TwilioCallControl", "TwilioCarrier", "build_router"]
