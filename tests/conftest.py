"""Shared fixtures: in-memory providers, a process left uninstrumented after every test, and test mode.

Test mode: otel_ml swallows its own errors (logged once, the program goes
on), which would let a bug of ours pass every test that does not read the
log. So any test during which otel_ml reported an internal error fails,
unless it carries ``@pytest.mark.internal_errors_expected`` (a fault test
that provokes one on purpose). pytest loads this file for ``pytest
tests/paddle`` too. Errors reported inside a subprocess that a test starts
are not seen here; those tests read the child's output.
"""

from __future__ import annotations

import os
import traceback
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
def _test_mode(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail the test if otel_ml reported an internal error while it ran (set-up and tear-down included)."""
    from otel_ml._core.guard import recording

    with recording() as errors:
        yield
    if errors and request.node.get_closest_marker("internal_errors_expected") is None:
        pytest.fail(_describe(errors), pytrace=False)


def _describe(errors: list[tuple[str, BaseException]]) -> str:
    lines = [
        f"otel_ml reported {len(errors)} internal error(s) during this test (test mode; mark the test "
        "@pytest.mark.internal_errors_expected if it provokes them on purpose):"
    ]
    for site, exc in errors[:5]:
        lines.append(f"--- in {site}:")
        lines.append("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip())
    if len(errors) > 5:
        lines.append(f"... and {len(errors) - 5} more")
    return "\n".join(lines)


@pytest.fixture(autouse=True)
def _uninstrumented(_test_mode: None) -> Iterator[None]:
    """Every test leaves the process uninstrumented, whatever it did (inside test mode: its errors count)."""
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
