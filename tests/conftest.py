"""Shared fixtures: in-memory providers, and a process left uninstrumented after every test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests._telemetry import Telemetry

# Fixtures shared by several test modules, kept beside their helpers.
pytest_plugins = ["tests._gpu_helpers"]

# Keep TensorFlow quiet and on the CPU in every test process.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")


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
