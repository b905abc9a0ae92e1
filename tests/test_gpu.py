"""The GPU instrumentor against the fake NVML: exact values, attributes, and what is absent on failure."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

import otel_ml
from otel_ml.gpu import GpuInstrumentor
from tests import fake_nvml
from tests._gpu_helpers import (
    GPU0,
    GPU1,
    GPU_METRICS,
    collect,
    device_attributes,
    identity_attributes,
    sensor_attributes,
)

READS = (
    "nvmlDeviceGetUtilizationRates",
    "nvmlDeviceGetEncoderUtilization",
    "nvmlDeviceGetDecoderUtilization",
    "nvmlDeviceGetMemoryInfo",
    "nvmlDeviceGetPowerUsage",
    "nvmlDeviceGetEnforcedPowerLimit",
    "nvmlDeviceGetTotalEnergyConsumption",
    "nvmlDeviceGetTemperature",
    "nvmlDeviceGetFanSpeed",
    "nvmlDeviceGetCurrentClocksEventReasons",
    "nvmlDeviceGetRetiredPagesPendingStatus",
    "nvmlDeviceGetRemappedRows",
    "nvmlDeviceGetComputeRunningProcesses",
    "nvmlDeviceGetProcessUtilization",
    "nvmlDeviceGetFieldValues",
    "nvmlGpmSampleGet",
)


def instrument(telemetry, **options) -> GpuInstrumentor:  # type: ignore[no-untyped-def]
    inst = GpuInstrumentor()
    inst.instrument(meter_provider=telemetry.meter_provider, nvml=fake_nvml, **options)
    return inst


def test_two_gpus_exact_values_and_attributes(telemetry, gpus) -> None:  # type: ignore[no-untyped-def]
    gpus[0].processes = [(os.getpid(), 1_073_741_824), (4242, 2_000)]
    instrument(telemetry)
    got = collect(telemetry.reader)
    a0, a1 = device_attributes(GPU0, 0), device_attributes(GPU1, 1)
    assert got["hw.gpu.utilization"][GPU0] == [
        (0.37, {**a0, "hw.gpu.task": "general"}),
        (0.12, {**a0, "hw.gpu.task": "encoder"}),
        (0.03, {**a0, "hw.gpu.task": "decoder"}),
    ]
    assert got["hw.gpu.utilization"][GPU1][0] == (0.05, {**a1, "hw.gpu.task": "general"})
    assert got["hw.gpu.memory.usage"] == {GPU0: [(12_884_901_888, a0)], GPU1: [(42_760_404_992, a1)]}
    assert got["hw.gpu.memory.limit"] == {GPU0: [(85_520_809_984, a0)], GPU1: [(85_520_809_984, a1)]}
    assert got["hw.gpu.memory.utilization"] == {
        GPU0: [(12_884_901_888 / 85_520_809_984, a0)],
        GPU1: [(0.5, a1)],
    }
    assert got["hw.power"] == {GPU0: [(312.456, a0)], GPU1: [(250.5, a1)]}
    assert got["hw.energy"] == {GPU0: [(9_876_543.21, a0)], GPU1: [(1000.0, a1)]}
    # Temperature describes sensors: each its own hw.id, the GPU as hw.parent, die and memory.
    assert got["hw.temperature"][f"{GPU0}/die"] == [(61.0, sensor_attributes(GPU0, 0, "temperature", "die"))]
    assert got["hw.temperature"][f"{GPU1}/die"] == [(45.0, sensor_attributes(GPU1, 1, "temperature", "die"))]
    assert got["hw.temperature"][f"{GPU1}/memory"] == [(72.0, sensor_attributes(GPU1, 1, "temperature", "memory"))]
    assert got["hw.errors"][GPU0] == [
        (3, {**a0, "error.type": "corrected"}),
        (0, {**a0, "error.type": "uncorrected"}),
    ]
    # Only this process by default; the other PID on the GPU is not reported.
    assert got["ml.gpu.process.memory.usage"] == {GPU0: [(1_073_741_824, {**a0, "process.pid": os.getpid()})]}
    # The identity (vendor, model, driver, serial, VBIOS, index) is on one hw.gpu.info series per GPU.
    assert got["hw.gpu.info"] == {
        GPU0: [(1, {**a0, **identity_attributes(0)})],
        GPU1: [(1, {**a1, **identity_attributes(1)})],
    }
    assert sorted(got) == sorted(GPU_METRICS)


def test_each_device_is_read_once_per_collection(telemetry, gpus) -> None:  # type: ignore[no-untyped-def]
    instrument(telemetry)
    state = fake_nvml.state
    state.calls.clear()
    collect(telemetry.reader)
    assert {name: state.calls[name] for name in READS} == dict.fromkeys(READS, 2)
    assert state.calls["nvmlDeviceGetTotalEccErrors"] == 4  # corrected and uncorrected, per device
    assert state.calls["nvmlDeviceGetClockInfo"] == 4  # SM and memory, per device
    assert state.calls["nvmlGpmMetricsGet"] == 2
    assert sum(state.calls.values()) == 2 * 21  # 21 NVML calls per device per collection, every signal on
    # Handles, UUIDs and names were cached at instrument time.
    assert state.calls["nvmlDeviceGetUUID"] == state.calls["nvmlDeviceGetName"] == 0
    assert state.calls["nvmlDeviceGetHandleByIndex"] == 0
    collect(telemetry.reader)
    assert {name: state.calls[name] for name in READS} == dict.fromkeys(READS, 4)


def test_values_are_fresh_at_every_collection(telemetry, gpus) -> None:  # type: ignore[no-untyped-def]
    instrument(telemetry)
    collect(telemetry.reader)
    gpus[1].power_mw = 99_125
    gpus[1].utilization = 100
    got = collect(telemetry.reader)
    assert got["hw.power"][GPU1][0][0] == 99.125
    assert got["hw.gpu.utilization"][GPU1][0][0] == 1.0


def test_without_a_gpu_one_info_line_and_nothing_registered(telemetry, gpus, caplog) -> None:  # type: ignore[no-untyped-def]
    fake_nvml.reset(gpus, init_error=fake_nvml.NVMLError_LibraryNotFound())
    with caplog.at_level(logging.INFO, logger="otel_ml.gpu"):
        inst = instrument(telemetry)
    lines = [r for r in caplog.records if r.name.startswith("otel_ml.gpu")]
    assert [(r.levelno, r.getMessage()) for r in lines] == [
        (
            logging.INFO,
            "otel_ml: GPU metrics off: NVML could not be initialised: NVML error 12 (NVMLError_LibraryNotFound)",
        )
    ]
    assert inst.sampler is None
    assert collect(telemetry.reader) == {}
    inst.uninstrument()
    assert fake_nvml.state.calls["nvmlShutdown"] == 0


def test_nvml_module_missing_is_one_info_line(telemetry, gpus, monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("OTEL_ML_GPU_NVML_MODULE", "no_such_nvml_module")
    with caplog.at_level(logging.INFO, logger="otel_ml.gpu"):
        GpuInstrumentor().instrument(meter_provider=telemetry.meter_provider)
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("otel_ml.gpu")]
    assert len(messages) == 1
    assert messages[0].startswith("otel_ml: GPU metrics off: cannot import no_such_nvml_module")
    assert collect(telemetry.reader) == {}


def test_a_failed_read_is_absent_not_zero_and_logged_once(telemetry, gpus, caplog) -> None:  # type: ignore[no-untyped-def]
    instrument(telemetry)
    gpus[1].errors["nvmlDeviceGetPowerUsage"] = fake_nvml.NVMLError_Unknown()
    with caplog.at_level(logging.WARNING, logger="otel_ml.gpu"):
        for _ in range(3):
            got = collect(telemetry.reader)
            assert got["hw.power"] == {GPU0: [(312.456, device_attributes(GPU0, 0))]}
            assert got["hw.temperature"][f"{GPU1}/die"][0][0] == 45.0  # the device's other reads go on
    warnings = [r.getMessage() for r in caplog.records if r.name.startswith("otel_ml.gpu")]
    assert len(warnings) == 1
    assert warnings[0].startswith("otel_ml: reading power of GPU gpu1 (" + GPU1 + ") failed: NVML error 999")
    del gpus[1].errors["nvmlDeviceGetPowerUsage"]
    assert collect(telemetry.reader)["hw.power"][GPU1][0][0] == 250.5  # back once the sensor answers


def test_unsupported_reads_are_probed_off(telemetry, gpus) -> None:  # type: ignore[no-untyped-def]
    gpus[1].energy_mj = None  # e.g. a pre-Volta GPU
    gpus[1].ecc = None  # ECC off
    instrument(telemetry)
    fake_nvml.state.calls.clear()
    got = collect(telemetry.reader)
    assert list(got["hw.energy"]) == [GPU0]
    assert list(got["hw.errors"]) == [GPU0]
    assert fake_nvml.state.calls["nvmlDeviceGetTotalEnergyConsumption"] == 1  # device 1 is not asked again
    assert fake_nvml.state.calls["nvmlDeviceGetTotalEccErrors"] == 2


def test_a_lost_gpu_stops_being_reported_with_one_warning(telemetry, gpus, caplog) -> None:  # type: ignore[no-untyped-def]
    instrument(telemetry)
    assert set(collect(telemetry.reader)["hw.power"]) == {GPU0, GPU1}
    gpus[0].lost = True
    with caplog.at_level(logging.WARNING, logger="otel_ml.gpu"):
        first = collect(telemetry.reader)
        fake_nvml.state.calls.clear()
        second = collect(telemetry.reader)
    for got in (first, second):
        assert all(hw_id.startswith(GPU1) for by_id in got.values() for hw_id in by_id), got
    assert fake_nvml.state.calls["nvmlDeviceGetUtilizationRates"] == 1  # only GPU1 is read
    warnings = [r.getMessage() for r in caplog.records if r.name.startswith("otel_ml.gpu")]
    assert warnings == [f"otel_ml: GPU gpu0 ({GPU0}) is lost; it is no longer reported"]


def test_all_processes_behind_a_switch(telemetry, gpus) -> None:  # type: ignore[no-untyped-def]
    gpus[1].processes = [(os.getpid(), 5_000), (4242, 7_000), (77, None)]  # None: NVML cannot tell
    instrument(telemetry, gpu_all_processes=True)
    got = collect(telemetry.reader)["ml.gpu.process.memory.usage"]
    a1 = device_attributes(GPU1, 1)
    assert got == {GPU1: [(5_000, {**a1, "process.pid": os.getpid()}), (7_000, {**a1, "process.pid": 4242})]}


def test_uninstrument_shuts_nvml_down_and_stops_observing(telemetry, gpus) -> None:  # type: ignore[no-untyped-def]
    inst = instrument(telemetry)
    instrument(telemetry)  # twice: harmless
    assert fake_nvml.state.calls["nvmlInit"] == 1
    inst.uninstrument()
    assert fake_nvml.state.calls["nvmlShutdown"] == 1
    assert fake_nvml.state.initialised == 0
    assert collect(telemetry.reader) == {}
    inst.uninstrument()
    assert fake_nvml.state.calls["nvmlShutdown"] == 1
    # Again on the same provider: the instruments created the first time observe again.
    instrument(telemetry)
    assert collect(telemetry.reader)["hw.power"][GPU1][0][0] == 250.5


def test_otel_ml_instrument_composes_the_gpu_instrumentor(telemetry, gpus, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("OTEL_ML_GPU_NVML_MODULE", "tests.fake_nvml")
    otel_ml.instrument(telemetry.meter_provider, telemetry.tracer_provider, gpu_all_devices=True)
    assert set(collect(telemetry.reader)["hw.power"]) == {GPU0, GPU1}
    otel_ml.uninstrument()
    assert collect(telemetry.reader) == {}


def test_bad_option_raises_and_bad_env_is_logged(telemetry, gpus, monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=r"gpu_all_devices='maybe' is invalid: expected true or false"):
        instrument(telemetry, gpu_all_devices="maybe")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    monkeypatch.setenv("OTEL_ML_GPU_ALL_DEVICES", "sometimes")
    with caplog.at_level(logging.ERROR):
        instrument(telemetry)
    assert any(r.getMessage().startswith("OTEL_ML_GPU_ALL_DEVICES='sometimes' is invalid") for r in caplog.records)
    assert set(collect(telemetry.reader)["hw.power"]) == {GPU1}  # the default (visible only) applies


def test_import_otel_ml_does_not_import_pynvml() -> None:
    code = "import sys, otel_ml, otel_ml.gpu; assert 'pynvml' not in sys.modules, 'pynvml imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent, timeout=60)
