"""The embedded endpoint: Prometheus/OpenMetrics ``/metrics`` with exemplars, and ``/slow-steps``."""

from otel_ml.distro.endpoint._reader import OtelMLPrometheusMetricReader, embedded_url
from otel_ml.distro.endpoint._server import EndpointUnavailable, serving_only
from otel_ml.distro.endpoint._slow_steps import SlowStepBuffer, default_slow_step_buffer

__all__ = [
    "EndpointUnavailable",
    "OtelMLPrometheusMetricReader",
    "SlowStepBuffer",
    "default_slow_step_buffer",
    "embedded_url",
    "serving_only",
]
