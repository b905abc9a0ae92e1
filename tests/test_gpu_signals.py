"""The DCGM-style GPU signals against the fake NVML: exact values, absent when unsupported or failing."""

from __future__ import annotations

import logging
import os
from types import ModuleType

import pytest

from otel_ml.gpu import GpuInstrumentor
from tests import fake_nvml
from tests._gpu_helpers import GPU0, GPU1, collect, device_attributes, sensor_attributes

A0, A1 = device_attributes(GPU0, 0), device_attributes(GPU1, 1)


def instrument(telemetry, **options) -> GpuInstrumentor:  # type: ignore[no-untyped-def]
    inst = GpuInstrumentor()
    inst.instrument(meter_provider=telemetry.meter_provider, nvml=fake_nvml, **options)
    return inst


def test_clocks_power_limit_fan_replays_and_links(telemetry, gpus) -> None:  # type: ignore[no-untyped-def]
    gpus[1].clocks_mhz = {fake_nvml.NVML_CLOCK_SM: 1410, fake_nvml.NVML_CLOCK_MEM: 1593}
    gpus[1].power_limit_mw = 400_500
    gpus[1].fan = 55
    instrument(telemetry)
    got = collect(telemetry.reader)
    assert got["hw.gpu.clock"][GPU1] == [
        (1_410_000_000.0, {**A1, "hw.gpu.clock.domain": "sm"}),
        (1_593_000_000.0, {**A1, "hw.gpu.clock.domain": "memory"}),
    ]
    assert got["hw.gpu.power.limit"] == {GPU0: [(700.0, A0)], GPU1: [(400.5, A1)]}
    assert got["hw.fan.speed_ratio"][f"{GPU1}/fan"] == [(0.55, sensor_attributes(GPU1, 1, "fan", "fan"))]
    assert got["hw.temperature"][f"{GPU0}/memory"] == [(72.0, sensor_attributes(GPU0, 0, "temperature", "memory"))]
    assert got["hw.gpu.pcie.replays"][GPU0] == [(2, A0)]
    assert got["hw.gpu.io"][GPU0] == [
        (123_456_789, {**A0, "network.io.direction": "receive"}),
        (98_765_432, {**A0, "network.io.direction": "transmit"}),
    ]
    assert got["hw.gpu.nvlink.io"][GPU0] == [  # KiB -> bytes
        (1_024_000, {**A0, "network.io.direction": "receive"}),
        (2_048_000, {**A0, "network.io.direction": "transmit"}),
    ]


def test_one_series_per_throttle_reason_1_while_active(telemetry, gpus) -> None:  # type: ignore[no-untyped-def]
    gpus[0].clock_events = fake_nvml.nvmlClocksEventReasonSwPowerCap | fake_nvml.nvmlClocksEventReasonHwThermalSlowdown
    instrument(telemetry)
    got = collect(telemetry.reader)["hw.gpu.throttle"]
    reasons = {attrs["hw.gpu.throttle.reason"]: value for value, attrs in got[GPU0]}
    assert reasons == {
        "gpu_idle": 0,
        "applications_clocks_setting": 0,
        "sw_power_cap": 1,
        "hw_slowdown": 0,
        "sync_boost": 0,
        "sw_thermal_slowdown": 0,
        "hw_thermal_slowdown": 1,
        "hw_power_brake_slowdown": 0,
        "display_clock_setting": 0,
    }
    assert got[GPU0][2] == (1, {**A0, "hw.gpu.throttle.reason": "sw_power_cap"})
    assert {value for value, _ in got[GPU1]} == {0}


@pytest.mark.parametrize(
    ("retired", "remapped", "expected"),
    [
        (False, (0, 0, 0, 0), "ok"),
        (True, (0, 0, 0, 0), "degraded"),  # pages wait for a reset to be retired
        (False, (3, 1, 1, 0), "degraded"),  # rows wait for a reset to be remapped
        (False, (3, 1, 0, 1), "failed"),  # remapping failed
        (None, (3, 1, 0, 1), "failed"),  # Ampere+: no page retirement, remapping tells
        (True, None, "degraded"),  # pre-Ampere: no remapping, page retirement tells
    ],
)
def test_hw_status_from_health_signals(telemetry, gpus, retired, remapped, expected) -> None:  # type: ignore[no-untyped-def]
    gpus[0].retired_pending, gpus[0].remapped_rows = retired, remapped
    instrument(telemetry)
    got = collect(telemetry.reader)["hw.status"]
    assert got[GPU0] == [(int(state == expected), {**A0, "hw.state": state}) for state in ("ok", "degraded", "failed")]


def test_no_health_signal_means_no_status(telemetry, gpus) -> None:  # type: ignore[no-untyped-def]
    gpus[1].retired_pending, gpus[1].remapped_rows = None, None
    instrument(telemetry)
    assert set(collect(telemetry.reader)["hw.status"]) == {GPU0}


def test_gpm_ratios_over_each_collection_interval(telemetry, gpus) -> None:  # type: ignore[no-untyped-def]
    inst = instrument(telemetry)
    assert fake_nvml.state.gpm_samples == 4  # two per device, allocated once
    got = collect(telemetry.reader)
    assert got["hw.gpu.sm.activity"] == {GPU0: [(0.625, A0)], GPU1: [(0.625, A1)]}
    assert got["hw.gpu.sm.occupancy"][GPU0] == [(0.3125, A0)]
    assert got["hw.gpu.tensor.activity"][GPU0] == [(0.4, A0)]
    assert got["hw.gpu.dram.activity"][GPU0] == [(0.25, A0)]
    gpus[0].gpm[fake_nvml.NVML_GPM_METRIC_SM_UTIL] = 100.0  # the next interval is busier
    fake_nvml.state.calls.clear()
    assert collect(telemetry.reader)["hw.gpu.sm.activity"][GPU0] == [(1.0, A0)]
    # One sample per device per collection; the fake rejects a request whose first sample is not the older.
    assert fake_nvml.state.calls["nvmlGpmSampleGet"] == fake_nvml.state.calls["nvmlGpmMetricsGet"] == 2
    assert fake_nvml.state.calls["nvmlGpmSampleAlloc"] == 0
    inst.uninstrument()
    assert fake_nvml.state.gpm_samples == 0  # freed


def test_gpm_unsupported_is_absent_and_never_sampled(telemetry, gpus) -> None:  # type: ignore[no-untyped-def]
    gpus[1].gpm = None  # e.g. an A100
    instrument(telemetry)
    fake_nvml.state.calls.clear()
    got = collect(telemetry.reader)
    assert list(got["hw.gpu.sm.activity"]) == [GPU0]
    assert fake_nvml.state.calls["nvmlGpmSampleGet"] == 1
    assert fake_nvml.state.gpm_samples == 2


def test_process_utilization_this_process_newest_sample(telemetry, gpus) -> None:  # type: ignore[no-untyped-def]
    instrument(telemetry)
    me = os.getpid()
    gpus[0].process_samples = [(me, 1_000, 20), (me, 2_000, 70), (4242, 2_000, 10)]
    got = collect(telemetry.reader)["ml.gpu.process.utilization"]
    assert got == {GPU0: [(0.7, {**A0, "process.pid": me})]}
    # No sample since the last collection: absent, not 0 (NVML answers NotFound).
    assert "ml.gpu.process.utilization" not in collect(telemetry.reader)
    gpus[0].process_samples.append((me, 3_000, 5))
    assert collect(telemetry.reader)["ml.gpu.process.utilization"][GPU0][0][0] == 0.05


def test_process_utilization_of_every_process_behind_the_switch(telemetry, gpus) -> None:  # type: ignore[no-untyped-def]
    instrument(telemetry, gpu_all_processes=True)
    gpus[1].process_samples = [(4242, 1_000, 10), (os.getpid(), 1_000, 30)]
    got = collect(telemetry.reader)["ml.gpu.process.utilization"][GPU1]
    assert got == [(0.1, {**A1, "process.pid": 4242}), (0.3, {**A1, "process.pid": os.getpid()})]


# (FakeGpu attribute, unsupported value, metric, NVML function, further collections' calls on the other GPU)
UNSUPPORTED = [
    ("encoder", None, "hw.gpu.utilization", "nvmlDeviceGetEncoderUtilization"),
    ("clocks_mhz", None, "hw.gpu.clock", "nvmlDeviceGetClockInfo"),
    ("clock_events", None, "hw.gpu.throttle", "nvmlDeviceGetCurrentClocksEventReasons"),
    ("power_limit_mw", None, "hw.gpu.power.limit", "nvmlDeviceGetEnforcedPowerLimit"),
    ("fan", None, "hw.fan.speed_ratio", "nvmlDeviceGetFanSpeed"),
    ("fields", {}, "hw.gpu.io", "nvmlDeviceGetFieldValues"),
    ("gpm", None, "hw.gpu.sm.activity", "nvmlGpmSampleGet"),
]


@pytest.mark.parametrize(("attribute", "value", "metric", "function"), UNSUPPORTED)
def test_unsupported_is_absent_and_not_read_again(telemetry, gpus, attribute, value, metric, function) -> None:  # type: ignore[no-untyped-def]
    setattr(gpus[1], attribute, value)
    instrument(telemetry)
    fake_nvml.state.calls.clear()
    got = collect(telemetry.reader)
    per_collection = {"nvmlDeviceGetClockInfo": 2}.get(function, 1)
    assert fake_nvml.state.calls[function] == per_collection  # GPU0's only
    if attribute == "encoder":  # the device's other utilisation series go on
        assert [attrs["hw.gpu.task"] for _, attrs in got[metric][GPU1]] == ["general", "decoder"]
    else:
        assert {hw_id.split("/")[0] for hw_id in got[metric]} == {GPU0}


def test_a_driver_without_the_call_is_unsupported(telemetry, gpus) -> None:  # type: ignore[no-untyped-def]
    gpus[0].errors["nvmlDeviceGetCurrentClocksEventReasons"] = fake_nvml.NVMLError_FunctionNotFound()
    instrument(telemetry)
    assert set(collect(telemetry.reader)["hw.gpu.throttle"]) == {GPU1}


def test_no_nvlink_means_no_nvlink_series_but_pcie_stays(telemetry, gpus) -> None:  # type: ignore[no-untyped-def]
    for field in (fake_nvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX, fake_nvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX):
        del gpus[1].fields[field]  # a PCIe card
    instrument(telemetry)
    got = collect(telemetry.reader)
    assert set(got["hw.gpu.nvlink.io"]) == {GPU0}
    assert set(got["hw.gpu.io"]) == {GPU0, GPU1}


@pytest.mark.parametrize(
    ("function", "metric"),
    [
        ("nvmlDeviceGetClockInfo", "hw.gpu.clock"),
        ("nvmlDeviceGetCurrentClocksEventReasons", "hw.gpu.throttle"),
        ("nvmlDeviceGetEnforcedPowerLimit", "hw.gpu.power.limit"),
        ("nvmlDeviceGetFanSpeed", "hw.fan.speed_ratio"),
        ("nvmlDeviceGetFieldValues", "hw.gpu.pcie.replays"),
        ("nvmlDeviceGetRemappedRows", "hw.status"),
        ("nvmlGpmSampleGet", "hw.gpu.dram.activity"),
        ("nvmlDeviceGetProcessUtilization", "ml.gpu.process.utilization"),
    ],
)
def test_a_read_error_is_absent_for_that_collection_only(telemetry, gpus, caplog, function, metric) -> None:  # type: ignore[no-untyped-def]
    instrument(telemetry)
    for gpu in gpus:
        gpu.process_samples = [(os.getpid(), 1_000, 25)]
    gpus[1].errors[function] = fake_nvml.NVMLError_Unknown()
    with caplog.at_level(logging.WARNING, logger="otel_ml.gpu"):
        failing = collect(telemetry.reader)
    assert {hw_id.split("/")[0] for hw_id in failing[metric]} == {GPU0}
    assert GPU1 in failing["hw.power"]  # the device's other reads go on
    reads = 2 if function == "nvmlDeviceGetClockInfo" else 1  # the SM and the memory clock are two reads
    assert len([r for r in caplog.records if "failed: NVML error 999" in r.getMessage()]) == reads
    del gpus[1].errors[function]
    for gpu in gpus:
        gpu.process_samples.append((os.getpid(), 2_000, 25))
    assert {hw_id.split("/")[0] for hw_id in collect(telemetry.reader)[metric]} == {GPU0, GPU1}


def test_one_failing_field_leaves_the_others(telemetry, gpus) -> None:  # type: ignore[no-untyped-def]
    instrument(telemetry)
    gpus[1].field_errors[fake_nvml.NVML_FI_DEV_MEMORY_TEMP] = fake_nvml.NVML_ERROR_UNKNOWN
    got = collect(telemetry.reader)
    assert set(got["hw.temperature"]) == {f"{GPU0}/die", f"{GPU0}/memory", f"{GPU1}/die"}
    assert got["hw.gpu.pcie.replays"][GPU1] == [(2, A1)]
    del gpus[1].field_errors[fake_nvml.NVML_FI_DEV_MEMORY_TEMP]
    assert f"{GPU1}/memory" in collect(telemetry.reader)["hw.temperature"]


def test_a_lost_gpu_frees_its_gpm_samples_and_loses_every_signal(telemetry, gpus) -> None:  # type: ignore[no-untyped-def]
    instrument(telemetry)
    collect(telemetry.reader)
    gpus[0].lost = True
    got = collect(telemetry.reader)
    assert all(hw_id.startswith(GPU1) for by_id in got.values() for hw_id in by_id)
    assert fake_nvml.state.gpm_samples == 2


class _OlderPynvml(ModuleType):
    """The fake NVML as an older nvidia-ml-py sees it: without the names that came later."""

    HIDDEN = frozenset(
        {
            "NVML_FI_DEV_PCIE_COUNT_RX_BYTES",  # not in nvidia-ml-py 12.535
            "NVML_FI_DEV_PCIE_COUNT_TX_BYTES",
            "nvmlDeviceGetCurrentClocksEventReasons",
            "nvmlClocksEventReasonSwPowerCap",
            "nvmlGpmQueryDeviceSupport",
        }
    )

    def __init__(self) -> None:
        super().__init__("older_pynvml")

    def __getattr__(self, name: str) -> object:
        if name in self.HIDDEN:
            raise AttributeError(name)
        return getattr(fake_nvml, name)


def test_an_older_pynvml_loses_only_what_it_cannot_name(telemetry, gpus, caplog) -> None:  # type: ignore[no-untyped-def]
    with caplog.at_level(logging.WARNING, logger="otel_ml.gpu"):
        GpuInstrumentor().instrument(meter_provider=telemetry.meter_provider, nvml=_OlderPynvml())
        got = collect(telemetry.reader)
    for absent in ("hw.gpu.io", "hw.gpu.throttle", "hw.gpu.sm.activity"):
        assert absent not in got, absent
    assert got["hw.gpu.nvlink.io"][GPU0][0][0] == 1_024_000  # the other fields are still read
    assert got["hw.gpu.pcie.replays"][GPU0] == [(2, A0)]
    assert caplog.messages == []
