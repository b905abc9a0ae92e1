"""The fake NVML's calls beyond the basics: clocks, health, field values, GPM, process utilisation, XID events.

Part of tests/fake_nvml.py (which re-exports everything here), split off to
keep modules small; the same rules hold: pynvml's names, parameters and
return shapes, each checked by tests/test_gpu_nvml_api.py.
"""

from __future__ import annotations

import itertools
import queue
from types import SimpleNamespace
from typing import Any

from tests import _fake_nvml_constants as C
from tests.fake_nvml import FakeGpu, NVMLError, _call, _value, state

__all__ = [
    "c_nvmlGpmMetricsGet_t",
    "emit_xid",
    "nvmlDeviceGetClockInfo",
    "nvmlDeviceGetCurrentClocksEventReasons",
    "nvmlDeviceGetDecoderUtilization",
    "nvmlDeviceGetEncoderUtilization",
    "nvmlDeviceGetEnforcedPowerLimit",
    "nvmlDeviceGetFanSpeed",
    "nvmlDeviceGetFieldValues",
    "nvmlDeviceGetProcessUtilization",
    "nvmlDeviceGetRemappedRows",
    "nvmlDeviceGetRetiredPagesPendingStatus",
    "nvmlDeviceGetSerial",
    "nvmlDeviceGetSupportedEventTypes",
    "nvmlDeviceGetVbiosVersion",
    "nvmlDeviceRegisterEvents",
    "nvmlEventSetCreate",
    "nvmlEventSetFree",
    "nvmlEventSetWait",
    "nvmlGpmMetricsGet",
    "nvmlGpmQueryDeviceSupport",
    "nvmlGpmSampleAlloc",
    "nvmlGpmSampleFree",
    "nvmlGpmSampleGet",
]


def nvmlDeviceGetSerial(handle: FakeGpu) -> str:
    _call("nvmlDeviceGetSerial", handle)
    return str(_value(handle.serial))


def nvmlDeviceGetVbiosVersion(handle: FakeGpu) -> str:
    _call("nvmlDeviceGetVbiosVersion", handle)
    return str(_value(handle.vbios))


def nvmlDeviceGetEncoderUtilization(handle: FakeGpu) -> list[int]:
    _call("nvmlDeviceGetEncoderUtilization", handle)
    return [int(_value(handle.encoder)), 167_000]  # [percent, sampling period in us]


def nvmlDeviceGetDecoderUtilization(handle: FakeGpu) -> list[int]:
    _call("nvmlDeviceGetDecoderUtilization", handle)
    return [int(_value(handle.decoder)), 167_000]


def nvmlDeviceGetEnforcedPowerLimit(handle: FakeGpu) -> int:
    _call("nvmlDeviceGetEnforcedPowerLimit", handle)
    return int(_value(handle.power_limit_mw))


def nvmlDeviceGetFanSpeed(handle: FakeGpu) -> int:
    _call("nvmlDeviceGetFanSpeed", handle)
    return int(_value(handle.fan))


def nvmlDeviceGetClockInfo(handle: FakeGpu, type: int) -> int:
    _call("nvmlDeviceGetClockInfo", handle)
    clocks = _value(handle.clocks_mhz)
    if type not in clocks:
        raise NVMLError(C.NVML_ERROR_INVALID_ARGUMENT)
    return int(clocks[type])


def nvmlDeviceGetCurrentClocksEventReasons(handle: FakeGpu) -> int:
    _call("nvmlDeviceGetCurrentClocksEventReasons", handle)
    return int(_value(handle.clock_events))


def nvmlDeviceGetRetiredPagesPendingStatus(device: FakeGpu) -> int:
    _call("nvmlDeviceGetRetiredPagesPendingStatus", device)
    return C.NVML_FEATURE_ENABLED if _value(device.retired_pending) else C.NVML_FEATURE_DISABLED


def nvmlDeviceGetRemappedRows(device: FakeGpu) -> tuple[int, int, int, int]:
    _call("nvmlDeviceGetRemappedRows", device)
    return tuple(_value(device.remapped_rows))  # type: ignore[return-value]


def nvmlDeviceGetFieldValues(handle: FakeGpu, fieldIds: list[Any]) -> list[SimpleNamespace]:
    """Like NVML: the call succeeds and each field carries its own return code (NotSupported, ...)."""
    _call("nvmlDeviceGetFieldValues", handle)
    values = []
    for item in fieldIds:
        field_id, scope = item if isinstance(item, tuple) else (item, 0)
        code = handle.field_errors.get(field_id, C.NVML_SUCCESS if field_id in handle.fields else None)
        code = C.NVML_ERROR_NOT_SUPPORTED if code is None else code
        raw = handle.fields.get(field_id, 0) if code == C.NVML_SUCCESS else 0
        value = SimpleNamespace(dVal=0.0, uiVal=0, ulVal=0, ullVal=0, sllVal=0, siVal=0, usVal=0)
        kind = (
            C.NVML_VALUE_TYPE_UNSIGNED_INT
            if field_id == C.NVML_FI_DEV_MEMORY_TEMP
            else C.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG
        )
        setattr(value, "uiVal" if kind == C.NVML_VALUE_TYPE_UNSIGNED_INT else "ullVal", raw)
        values.append(
            SimpleNamespace(
                fieldId=field_id,
                scopeId=scope,
                timestamp=0,
                latencyUsec=0,
                valueType=kind,
                nvmlReturn=code,
                value=value,
            )
        )
    return values


def nvmlDeviceGetProcessUtilization(handle: FakeGpu, timeStamp: int) -> list[SimpleNamespace]:
    _call("nvmlDeviceGetProcessUtilization", handle)
    fresh = [s for s in _value(handle.process_samples) if s[1] > timeStamp]
    if not fresh:
        raise NVMLError(C.NVML_ERROR_NOT_FOUND)  # NVML: no sample since timeStamp
    return [SimpleNamespace(pid=pid, timeStamp=t, smUtil=sm, memUtil=0, encUtil=0, decUtil=0) for pid, t, sm in fresh]


# --- GPM: samples hold the device's counters; the metrics are the rates configured in FakeGpu.gpm ---


_sample_clock = itertools.count(1)  # orders samples: the first of a metrics request must be the older


class c_nvmlGpmMetricsGet_t:
    def __init__(self) -> None:
        self.version = 0
        self.numMetrics = 0
        self.sample1: Any = None
        self.sample2: Any = None
        self.metrics = [SimpleNamespace(metricId=0, nvmlReturn=0, value=0.0) for _ in range(C.NVML_GPM_METRIC_MAX)]


def nvmlGpmQueryDeviceSupport(device: FakeGpu) -> SimpleNamespace:
    _call("nvmlGpmQueryDeviceSupport", device)
    return SimpleNamespace(version=C.NVML_GPM_SUPPORT_VERSION, isSupportedDevice=int(device.gpm is not None))


def nvmlGpmSampleAlloc() -> SimpleNamespace:
    _call("nvmlGpmSampleAlloc")
    state.gpm_samples += 1
    return SimpleNamespace(device=None, taken=0, freed=False)


def nvmlGpmSampleFree(gpmSample: SimpleNamespace) -> None:
    _call("nvmlGpmSampleFree")
    if not gpmSample.freed:
        gpmSample.freed = True
        state.gpm_samples -= 1


def nvmlGpmSampleGet(device: FakeGpu, gpmSample: SimpleNamespace) -> SimpleNamespace:
    _call("nvmlGpmSampleGet", device)
    _value(device.gpm)
    gpmSample.device, gpmSample.taken = device, next(_sample_clock)
    return gpmSample


def nvmlGpmMetricsGet(metricsGet: c_nvmlGpmMetricsGet_t) -> c_nvmlGpmMetricsGet_t:
    _call("nvmlGpmMetricsGet")
    first, second = metricsGet.sample1, metricsGet.sample2
    if metricsGet.version != C.NVML_GPM_METRICS_GET_VERSION or first is None or second is None:
        raise NVMLError(C.NVML_ERROR_INVALID_ARGUMENT)
    if first.freed or second.freed or first.device is not second.device or not 0 < first.taken < second.taken:
        raise NVMLError(C.NVML_ERROR_INVALID_ARGUMENT)  # two samples of one device, older first
    rates = second.device.gpm
    for metric in metricsGet.metrics[: metricsGet.numMetrics]:
        metric.nvmlReturn = C.NVML_SUCCESS if metric.metricId in rates else C.NVML_ERROR_NOT_SUPPORTED
        metric.value = rates.get(metric.metricId, 0.0)
    return metricsGet


# --- events (XID): emit_xid() plays the driver ---


class _EventSet:
    def __init__(self) -> None:
        self.devices: list[FakeGpu] = []
        self.pending: queue.Queue[SimpleNamespace] = queue.Queue()
        self.freed = False


def nvmlEventSetCreate() -> _EventSet:
    _call("nvmlEventSetCreate")
    events = _EventSet()
    state.event_sets.append(events)
    return events


def nvmlDeviceGetSupportedEventTypes(handle: FakeGpu) -> int:
    _call("nvmlDeviceGetSupportedEventTypes", handle)
    return handle.event_types


def nvmlDeviceRegisterEvents(handle: FakeGpu, eventTypes: int, eventSet: _EventSet) -> None:
    _call("nvmlDeviceRegisterEvents", handle)
    if eventTypes & ~handle.event_types:
        raise NVMLError(C.NVML_ERROR_NOT_SUPPORTED)
    eventSet.devices.append(handle)


def nvmlEventSetWait(eventSet: _EventSet, timeoutms: int) -> SimpleNamespace:
    state.event_waits += 1  # not in state.calls: the watcher thread waits beside the collections
    try:
        return eventSet.pending.get(timeout=timeoutms / 1000)
    except queue.Empty:
        raise NVMLError(C.NVML_ERROR_TIMEOUT) from None


def nvmlEventSetFree(eventSet: _EventSet) -> None:
    _call("nvmlEventSetFree")
    eventSet.freed = True


def emit_xid(gpu: FakeGpu, code: int) -> None:
    """The driver reports XID ``code`` on ``gpu`` to every event set it is registered with."""
    for events in state.event_sets:
        if gpu in events.devices and not events.freed:
            data = SimpleNamespace(
                device=gpu,
                eventType=C.nvmlEventTypeXidCriticalError,
                eventData=code,
                gpuInstanceId=0,
                computeInstanceId=0,
            )
            events.pending.put(data)
