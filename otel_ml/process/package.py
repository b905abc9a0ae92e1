"""The distribution the process-health instrumentor needs (installed with otel_ml)."""

from __future__ import annotations

_instruments_any = ("opentelemetry-instrumentation-system-metrics >= 0.61b0",)
