"""Spend controls: per-agent concurrency, daily budgets and per-caller caps, and a
platform-wide daily budget, holding across server processes (see ``gate.py``)."""

from agentplatform.limits.gate import CallGate, Refusal, open_limit_store
from agentplatform.limits.store import DatabaseLimitStore, LimitStore, utc_day

__all__ = ["CallGate", "DatabaseLimitStore", "LimitStore", "Refusal", "open_limit_store",
           "utc_day"]
