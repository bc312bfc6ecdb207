"""agentplatform: answer phone calls with realtime speech models."""

__version__ = "0.1.0"
