"""The GPU instrumentor against the real NVML: runs only where an NVIDIA GPU and driver are present.

On a machine without one, every test here is skipped with the reason NVML
gave. These are the tests that prove the real path: the fake-NVML tests do not.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from types import ModuleType

import pytest

from otel_ml.gpu import GpuInstrumentor
from otel_ml.gpu._nvml import text
from tests._gpu_helpers import collect

pytestmark = pytest.mark.gpu


@pytest.fixture
def nvml(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The real pynvml, initialised, or a skip saying why not."""
    try:
        import pynvml
    except ImportError as exc:
        pytest.skip(f"no NVIDIA GPU/driver: pynvml (nvidia-ml-py) is not installed: {exc}")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        pytest.skip(f"no NVIDIA GPU/driver: NVML could not be initialised: {exc} ({type(exc).__name__})")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)  # conftest hides GPUs from TensorFlow
    monkeypatch.delenv("OTEL_ML_GPU_NVML_MODULE", raising=False)
    yield pynvml
    GpuInstrumentor().uninstrument()
    pynvml.nvmlShutdown()


def test_real_gpus_report_identity_and_exact_memory_limit(telemetry, nvml) -> None:  # type: ignore[no-untyped-def]
    GpuInstrumentor().instrument(meter_provider=telemetry.meter_provider, gpu_all_devices=True)
    got = collect(telemetry.reader)
    expected = {}
    for index in range(nvml.nvmlDeviceGetCount()):
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        expected[text(nvml.nvmlDeviceGetUUID(handle))] = (index, nvml.nvmlDeviceGetMemoryInfo(handle).total)
    limits = {uuid: points[0] for uuid, points in got["hw.gpu.memory.limit"].items() if uuid.startswith("GPU-")}
    assert set(limits) == set(expected)
    for uuid, (value, attrs) in limits.items():
        index, total = expected[uuid]
        assert value == total  # bytes, not rounded
        assert attrs["ml.gpu.index"] == index
        assert attrs["hw.vendor"] == "NVIDIA"
        assert attrs["hw.driver_version"] == text(nvml.nvmlSystemGetDriverVersion())
    for uuid, points in got.get("hw.gpu.utilization", {}).items():
        assert 0.0 <= points[0][0] <= 1.0, uuid
    for uuid, points in got.get("hw.temperature", {}).items():
        assert 0.0 < points[0][0] < 130.0, uuid
    for uuid, points in got.get("hw.power", {}).items():
        assert 0.0 < points[0][0] < 2000.0, uuid


def test_real_energy_counter_does_not_go_backwards(telemetry, nvml) -> None:  # type: ignore[no-untyped-def]
    GpuInstrumentor().instrument(meter_provider=telemetry.meter_provider, gpu_all_devices=True)
    first = collect(telemetry.reader).get("hw.energy", {})
    if not first:
        pytest.skip("no GPU here reports total energy (nvmlDeviceGetTotalEnergyConsumption: NotSupported)")
    time.sleep(0.2)
    second = collect(telemetry.reader)["hw.energy"]
    for uuid, points in first.items():
        assert second[uuid][0][0] >= points[0][0]


def test_real_collection_costs_at_most_1ms_per_device(telemetry, nvml) -> None:  # type: ignore[no-untyped-def]
    inst = GpuInstrumentor()
    inst.instrument(meter_provider=telemetry.meter_provider, gpu_all_devices=True)
    sampler = inst.sampler
    assert sampler is not None
    devices = len(sampler.devices)
    times = []
    for _ in range(50):
        start = time.perf_counter()
        sampler.snapshot(1 << 30)  # a bit no instrument uses: every call is a fresh read
        times.append(time.perf_counter() - start)
    per_device_ms = statistics.median(times) * 1000 / devices
    print(f"real NVML read: {per_device_ms:.3f} ms per device per collection ({devices} devices)")
    assert per_device_ms <= 1.0
