"""Shared by the GPU tests: the fake NVML fixture and a one-collection reader of the GPU metrics."""

from __future__ import annotations

import time
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
    "hw.status",
    "hw.gpu.io",
    "hw.fan.speed_ratio",
    "hw.gpu.clock",
    "hw.gpu.throttle",
    "hw.gpu.power.limit",
    "hw.gpu.pcie.replays",
    "hw.gpu.nvlink.io",
    "hw.gpu.sm.activity",
    "hw.gpu.sm.occupancy",
    "hw.gpu.tensor.activity",
    "hw.gpu.dram.activity",
    "ml.gpu.process.memory.usage",
    "hw.gpu.info",
)
"""Every GPU metric the default fake devices report (XID errors and process utilisation need events/samples)."""


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


def device_attributes(uuid: str, index: int) -> dict[str, Any]:
    """The attributes every series of a physical device carries: what selects it and joins it to hw.gpu.info."""
    return {"hw.id": uuid, "hw.name": f"gpu{index}", "hw.type": "gpu"}


def identity_attributes(index: int, model: str = "NVIDIA H100 80GB HBM3") -> dict[str, Any]:
    """What hw.gpu.info adds for a physical device (the fake's driver, serial and VBIOS)."""
    return {
        "hw.vendor": "NVIDIA",
        "hw.model": model,
        "hw.driver_version": "550.54.15",
        "ml.gpu.index": index,
        "hw.serial_number": "1654922012345",
        "hw.firmware_version": "96.00.99.00.01",
    }


def sensor_attributes(uuid: str, index: int, kind: str, part: str) -> dict[str, Any]:
    """A temperature sensor or fan of a GPU: its own id, the GPU as parent."""
    attributes = {
        "hw.id": f"{uuid}/{part}",
        "hw.name": f"gpu{index} {part}",
        "hw.type": kind,
        "hw.parent": uuid,
    }
    if kind == "temperature":
        attributes["hw.sensor_location"] = part
    return attributes


def wait_for_xid(instrumentor: GpuInstrumentor, count: int = 1, timeout: float = 5.0) -> None:
    """Wait until the XID watcher thread counted ``count`` events (it runs beside the test)."""
    deadline = time.monotonic() + timeout
    watcher = instrumentor._xid
    assert watcher is not None, "no XID watcher"
    while sum(n for _device, _code, n in watcher.counts()) < count:
        assert time.monotonic() < deadline, "the XID watcher did not count the event"
        time.sleep(0.01)


@pytest.fixture
def gpus(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[FakeGpu]]:
    """Two fake H100s, every device visible (conftest hides them with CUDA_VISIBLE_DEVICES='')."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    devices = fake_nvml.default_gpus()
    fake_nvml.reset(devices)
    yield devices
    GpuInstrumentor().uninstrument()
