"""Shared by the GPU tests: the fake NVML fixture and a one-collection reader of the GPU metrics."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from otel_ml.gpu import GpuInstrumentor
from tests import fake_nvml
from tests.fake_nvml import FakeGpu

GPU0 = "GPU-00000000-1111-2222-3333-444444444444"
GPU1 = "GPU-99999999-8888-7777-6666-555555555555"
GPU_METRICS = (
    "hw.gpu.utilization",
    "hw.gpu.memory.utilization",
    "hw.gpu.memory.usage",
    "hw.gpu.memory.limit",
    "hw.power",
    "hw.energy",
    "hw.temperature",
    "hw.errors",
    "ml.gpu.process.memory.usage",
)


def collect(reader: InMemoryMetricReader) -> dict[str, dict[str, list[tuple[Any, dict[str, Any]]]]]:
    """One collection: metric name -> hw.id -> [(value, attributes)], only metrics with points.

    Points without ``hw.id`` (``otel_ml.instrument()`` also turns on process metrics) are not the GPU's.
    """
    data = reader.get_metrics_data()
    found: dict[str, dict[str, list[tuple[Any, dict[str, Any]]]]] = {}
    for rm in data.resource_metrics if data else []:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for point in metric.data.data_points:
                    attrs = dict(point.attributes)
                    if "hw.id" not in attrs:
                        continue
                    found.setdefault(metric.name, {}).setdefault(attrs["hw.id"], []).append((point.value, attrs))
    return found


def device_attributes(uuid: str, index: int, model: str = "NVIDIA H100 80GB HBM3") -> dict[str, Any]:
    """The attributes every metric of a physical device carries."""
    return {
        "hw.id": uuid,
        "hw.type": "gpu",
        "hw.vendor": "NVIDIA",
        "hw.model": model,
        "hw.driver_version": "550.54.15",
        "ml.gpu.index": index,
        "hw.name": f"gpu{index}",
    }


@pytest.fixture
def gpus(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[FakeGpu]]:
    """Two fake H100s, every device visible (conftest hides them with CUDA_VISIBLE_DEVICES='')."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    devices = fake_nvml.default_gpus()
    fake_nvml.reset(devices)
    yield devices
    GpuInstrumentor().uninstrument()
