"""Shared fixtures: in-memory providers, and a process left uninstrumented after every test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

# Fixtures shared by several test modules, kept beside their helpers.
pytest_plugins = ["tests._gpu_helpers"]

# Keep TensorFlow quiet and on the CPU in every test process.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")


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


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    """Fresh in-memory meter and tracer providers, passed explicitly (never global)."""
    reader = InMemoryMetricReader()
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    meter_provider = MeterProvider(metric_readers=[reader])
    yield Telemetry(reader, exporter, meter_provider, tracer_provider)
    meter_provider.shutdown()
    tracer_provider.shutdown()


@pytest.fixture(autouse=True)
def _uninstrumented() -> Iterator[None]:
    """Every test leaves the process uninstrumented, whatever it did."""
    yield
    import otel_ml

    otel_ml.uninstrument()


@pytest.fixture(params=["keras", "tf_keras"])
def kit(request: pytest.FixtureRequest) -> Any:
    """The Keras test helpers for Keras 3 and for Keras 2 (``tf_keras``): one test, both flavours.

    Imported here, not at collection, so that a process without TensorFlow
    (the Paddle tests) never loads it.
    """
    from tests import _keras_models

    return _keras_models.kit(request.param)
