"""The one way tests read telemetry back: in-memory providers and what they captured."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


@dataclass
class Telemetry:
    """In-memory providers and what they captured."""

    reader: InMemoryMetricReader
    spans: InMemorySpanExporter
    meter_provider: MeterProvider
    tracer_provider: TracerProvider

    def points(self, name: str) -> list[Any]:
        """All data points of metric ``name`` from one collection (empty if absent)."""
        data = self.reader.get_metrics_data()
        found: list[Any] = []
        for rm in data.resource_metrics if data else []:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name == name:
                        found.extend(metric.data.data_points)
        return found

    def finished(self, name: str | None = None) -> list[ReadableSpan]:
        """Finished spans, optionally only those called ``name``."""
        spans = self.spans.get_finished_spans()
        return [s for s in spans if name is None or s.name == name]

    def points_by(self, name: str) -> dict[tuple[tuple[str, Any], ...], Any]:
        """Data points of ``name`` keyed by their sorted attribute items."""
        return {tuple(sorted(dict(p.attributes).items())): p for p in self.points(name)}

    def model_points(self, name: str, model: str) -> list[Any]:
        """Data points of ``name`` whose ``ml.model.name`` is ``model``."""
        return [p for p in self.points(name) if dict(p.attributes).get("ml.model.name") == model]

    def instrument(self, instrumentor: type, **options: Any) -> None:
        """Instrument with these providers (passed explicitly, never global)."""
        instrumentor().instrument(meter_provider=self.meter_provider, tracer_provider=self.tracer_provider, **options)
