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
    info = {uuid: points for uuid, points in got["hw.gpu.info"].items() if uuid.startswith("GPU-")}
    assert set(limits) == set(info) == set(expected)
    for uuid, (value, attrs) in limits.items():
        index, total = expected[uuid]
        assert value == total  # bytes, not rounded
        assert attrs == {"hw.id": uuid, "hw.name": f"gpu{index}", "hw.type": "gpu"}
        [(one, identity)] = info[uuid]
        assert one == 1
        assert identity["ml.gpu.index"] == index
        assert identity["hw.vendor"] == "NVIDIA"
        assert identity["hw.model"] == text(nvml.nvmlDeviceGetName(nvml.nvmlDeviceGetHandleByUUID(uuid)))
        assert identity["hw.driver_version"] == text(nvml.nvmlSystemGetDriverVersion())
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


def _values(got: dict, name: str) -> list[tuple[float, dict]]:  # type: ignore[type-arg]
    return [point for points in got.get(name, {}).values() for point in points]


def test_real_dcgm_style_signals_are_plausible(telemetry, nvml) -> None:  # type: ignore[no-untyped-def]
    inst = GpuInstrumentor()
    inst.instrument(meter_provider=telemetry.meter_provider, gpu_all_devices=True)
    first = collect(telemetry.reader)
    time.sleep(0.5)  # a GPM window and new PCIe counts
    got = collect(telemetry.reader)
    assert all(0 < v <= 4e9 for v, a in _values(got, "hw.gpu.clock") if a["hw.gpu.clock.domain"] == "sm")
    assert all(0 < v <= 2e10 for v, a in _values(got, "hw.gpu.clock") if a["hw.gpu.clock.domain"] == "memory")
    throttle = _values(got, "hw.gpu.throttle")
    assert all(v in (0, 1) for v, _ in throttle)
    assert len(throttle) % 9 == 0
    assert all(50 <= v <= 2000 for v, _ in _values(got, "hw.gpu.power.limit"))
    assert all(0 <= v <= 2 for v, _ in _values(got, "hw.fan.speed_ratio"))
    temperatures = _values(got, "hw.temperature")
    assert {a["hw.sensor_location"] for _, a in temperatures} <= {"die", "memory"}
    assert all(0 < v < 130 for v, _ in temperatures)
    for name in ("hw.gpu.io", "hw.gpu.nvlink.io", "hw.gpu.pcie.replays", "hw.errors"):
        before = {(hw_id, tuple(sorted(a.items()))): v for hw_id, ps in first.get(name, {}).items() for v, a in ps}
        for hw_id, points in got.get(name, {}).items():
            for value, attrs in points:
                assert value >= before.get((hw_id, tuple(sorted(attrs.items()))), 0), (name, hw_id)
    for points in got.get("hw.status", {}).values():
        assert sorted(v for v, _ in points) == [0, 0, 1]
    for name in ("hw.gpu.sm.activity", "hw.gpu.sm.occupancy", "hw.gpu.tensor.activity", "hw.gpu.dram.activity"):
        assert all(0.0 <= v <= 1.0 for v, _ in _values(got, name)), name
    assert all(0.0 <= v <= 1.0 for v, _ in _values(got, "ml.gpu.process.utilization"))
    for uuid, points in got["hw.gpu.info"].items():
        attrs = points[0][1]
        if "hw.serial_number" in attrs:
            handle = nvml.nvmlDeviceGetHandleByUUID(uuid)
            assert attrs["hw.serial_number"] == text(nvml.nvmlDeviceGetSerial(handle))
            assert attrs["hw.firmware_version"] == text(nvml.nvmlDeviceGetVbiosVersion(handle))
    xid = inst._xid
    inst.uninstrument()
    assert xid is None or not xid.watching  # the XID thread stopped with the instrumentation


def _matmul_loop(seconds: float) -> bool:
    """Keep the first GPU's SMs busy with matmuls; False when no CUDA array library is installed."""
    try:
        import cupy  # type: ignore[import-not-found]
    except ImportError:
        try:
            import torch  # type: ignore[import-not-found]
        except ImportError:
            return False
        if not torch.cuda.is_available():
            return False
        a = torch.randn(4096, 4096, device="cuda", dtype=torch.float16)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            (a @ a).sum().item()
        return True
    a = cupy.random.random((4096, 4096), dtype=cupy.float32).astype(cupy.float16)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        float((a @ a).sum())
    return True


def test_real_sm_activity_rises_under_a_matmul_loop(telemetry, nvml) -> None:  # type: ignore[no-untyped-def]
    GpuInstrumentor().instrument(meter_provider=telemetry.meter_provider, gpu_all_devices=True)
    if not collect(telemetry.reader).get("hw.gpu.sm.activity"):
        pytest.skip("no GPU here supports GPM (Hopper or newer needed for hw.gpu.sm.activity)")
    if not _matmul_loop(2.0):
        pytest.skip("no CUDA array library (cupy or torch with CUDA) to run a matmul loop")
    got = collect(telemetry.reader)
    assert max(v for v, _ in _values(got, "hw.gpu.sm.activity")) > 0.05
    assert max(v for v, _ in _values(got, "hw.gpu.tensor.activity")) > 0.0
