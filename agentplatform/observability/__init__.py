"""What the platform tells operators: Prometheus metrics and call-scoped logs."""

from agentplatform.observability.logging import bind_call, configure_logging
from agentplatform.observability.metrics import Gauges, PlatformMetrics

__all__ = ["Gauges", "PlatformMetrics", "bind_call", "configure_logging"]
