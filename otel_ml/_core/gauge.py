"""The synchronous gauge, typed without the API's private class name.

``Meter.create_gauge`` is public (API 1.23 and newer), but the class it
returns is still ``opentelemetry.metrics._Gauge``; the instrumentation layer
imports no private OpenTelemetry name, so it types gauges by what it calls.
"""

from __future__ import annotations

from typing import Protocol

from opentelemetry.context import Context
from opentelemetry.util.types import Attributes


class Gauge(Protocol):
    """What otel_ml calls on a gauge made by ``Meter.create_gauge``."""

    def set(self, amount: float, attributes: Attributes = None, context: Context | None = None) -> None: ...
