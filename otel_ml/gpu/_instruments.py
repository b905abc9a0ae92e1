"""The GPU instruments: one table of name, kind, unit, description and what each observes.

They are created once per meter provider through :func:`otel_ml._core.observe.binding_for`
(the SDK cannot unregister an observable instrument); their callbacks read
the :class:`GpuState` the binding holds while instrumented, and observe
nothing while it holds none. Each callback owns one bit of the sampler's
"already consumed" mask, so a collection reads NVML once.

What each observes in a snapshot (the functions before the table): values to
observations, attribute dicts looked up. Every such function takes the bound
:class:`GpuState` and the snapshot the sampler handed this instrument, and
yields nothing for a value that is absent (not supported, or not read this
time). The ``field`` values come from one ``nvmlDeviceGetFieldValues`` call;
XID counts come from the watcher thread.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from types import ModuleType
from typing import Any, Final

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from otel_ml._core import semconv as sc
from otel_ml._core.observe import Binding, binding_for
from otel_ml.gpu import _sampler as r
from otel_ml.gpu._devices import Attributes, Labels
from otel_ml.gpu._sampler import Sampler, Snapshot
from otel_ml.gpu._xid import XidWatcher

_NVLINK_KIB: Final = 1024  # NVML counts NVLink data in KiB


class GpuState:
    """What the GPU instruments observe while instrumented: the sampler, labels, options, XID counts."""

    def __init__(self, nvml: ModuleType, sampler: Sampler, xid: XidWatcher | None, *, all_processes: bool) -> None:
        self.pid = os.getpid()
        self.sampler = sampler
        self.xid = xid
        self.all_processes = all_processes
        self.labels = {id(d): Labels(nvml, d, self.pid) for d in sampler.devices}
        ids = r.field_ids(nvml)
        self.memory_temperature_field = ids.memory_temperature
        self.pcie_fields = (ids.pcie_rx, ids.pcie_tx)
        self.replay_field = ids.pcie_replays
        self.nvlink_fields = (ids.nvlink_rx, ids.nvlink_tx)


Observations = Iterator[Observation]


def simple(slot: int, state: GpuState, snapshot: Snapshot) -> Observations:
    for device, values in snapshot:
        if values[slot] is not None:
            yield Observation(values[slot], device.attributes)


def utilization(state: GpuState, snapshot: Snapshot) -> Observations:
    for device, values in snapshot:
        labels = state.labels[id(device)]
        for slot, attributes in (
            (r.UTILIZATION, labels.general),
            (r.ENCODER, labels.encoder),
            (r.DECODER, labels.decoder),
        ):
            if values[slot] is not None:
                yield Observation(values[slot], attributes)


def memory(part: int, state: GpuState, snapshot: Snapshot) -> Observations:
    for device, values in snapshot:
        if values[r.MEMORY] is not None:
            yield Observation(values[r.MEMORY][part], device.attributes)


def memory_utilization(state: GpuState, snapshot: Snapshot) -> Observations:
    for device, values in snapshot:
        used_total = values[r.MEMORY]
        if used_total is not None and used_total[1] > 0:
            yield Observation(used_total[0] / used_total[1], device.attributes)


def temperature(state: GpuState, snapshot: Snapshot) -> Observations:
    for device, values in snapshot:
        sensors = state.labels[id(device)].temperature
        if values[r.TEMPERATURE] is not None:
            yield Observation(values[r.TEMPERATURE], sensors[sc.SENSOR_DIE])
        fields = values[r.FIELDS]
        if fields and state.memory_temperature_field in fields:
            yield Observation(float(fields[state.memory_temperature_field]), sensors[sc.SENSOR_MEMORY])


def fan(state: GpuState, snapshot: Snapshot) -> Observations:
    for device, values in snapshot:
        if values[r.FAN] is not None:
            yield Observation(values[r.FAN], state.labels[id(device)].fan)


def clocks(state: GpuState, snapshot: Snapshot) -> Observations:
    for device, values in snapshot:
        sm, mem = state.labels[id(device)].clocks
        if values[r.CLOCK_SM] is not None:
            yield Observation(values[r.CLOCK_SM], sm)
        if values[r.CLOCK_MEMORY] is not None:
            yield Observation(values[r.CLOCK_MEMORY], mem)


def throttle(state: GpuState, snapshot: Snapshot) -> Observations:
    for device, values in snapshot:
        mask = values[r.CLOCK_EVENTS]
        if mask is not None:
            for bit, attributes in state.labels[id(device)].throttle:
                yield Observation(1 if mask & bit else 0, attributes)


def errors(state: GpuState, snapshot: Snapshot) -> Observations:
    for device, values in snapshot:
        labels = state.labels[id(device)]
        if values[r.ECC_CORRECTED] is not None:
            yield Observation(values[r.ECC_CORRECTED], labels.corrected)
        if values[r.ECC_UNCORRECTED] is not None:
            yield Observation(values[r.ECC_UNCORRECTED], labels.uncorrected)


def status(state: GpuState, snapshot: Snapshot) -> Observations:
    """``hw.status``: 1 for the current state, 0 for the others, when every health signal the GPU has was read."""
    for device, values in snapshot:
        pending, remapped = values[r.RETIRED], values[r.REMAPPED]
        failed = any(values[s] is None and state.sampler.supports(device, s) for s in (r.RETIRED, r.REMAPPED))
        if failed or (pending is None and remapped is None):
            continue  # a health read failed this time: no state rather than a guess
        remap_pending, remap_failed = remapped if remapped is not None else (False, False)
        now = sc.STATE_FAILED if remap_failed else sc.STATE_DEGRADED if pending or remap_pending else sc.STATE_OK
        for name, attributes in state.labels[id(device)].states:
            yield Observation(1 if name == now else 0, attributes)


def _directions(
    fields: dict[int, float] | None, ids: tuple[int | None, int | None], scale: int, pair: tuple[Attributes, Attributes]
) -> Observations:
    if fields:
        for field, attributes in zip(ids, pair, strict=True):
            if field in fields:
                yield Observation(int(fields[field]) * scale, attributes)


def pcie_io(state: GpuState, snapshot: Snapshot) -> Observations:
    for device, values in snapshot:
        yield from _directions(values[r.FIELDS], state.pcie_fields, 1, state.labels[id(device)].directions)


def nvlink_io(state: GpuState, snapshot: Snapshot) -> Observations:
    for device, values in snapshot:
        yield from _directions(values[r.FIELDS], state.nvlink_fields, _NVLINK_KIB, state.labels[id(device)].directions)


def pcie_replays(state: GpuState, snapshot: Snapshot) -> Observations:
    for device, values in snapshot:
        fields = values[r.FIELDS]
        if fields and state.replay_field in fields:
            yield Observation(int(fields[state.replay_field]), device.attributes)


def gpm(index: int, state: GpuState, snapshot: Snapshot) -> Observations:
    for device, values in snapshot:
        ratios = values[r.GPM]
        if ratios is not None and ratios[index] is not None:
            yield Observation(ratios[index], device.attributes)


def per_process(slot: int, state: GpuState, snapshot: Snapshot) -> Observations:
    """Per-process memory or utilisation: this process, or every process when the switch is on."""
    for device, values in snapshot:
        processes = values[slot]
        if not processes:
            continue
        labels = state.labels[id(device)]
        for pid, value in processes:
            if pid == state.pid:
                yield Observation(value, labels.own_pid)
            elif state.all_processes:
                yield Observation(value, labels.for_pid(pid, len(processes)))


def info(state: GpuState, snapshot: Snapshot) -> Observations:
    """``hw.gpu.info``: 1 per reported device, with the identity attributes the other series leave out."""
    for device, _values in snapshot:
        yield Observation(1, state.labels[id(device)].info)


def xid_errors(state: GpuState, snapshot: Snapshot) -> Observations:
    del snapshot  # counted by the watcher thread: no NVML call here
    if state.xid is not None:
        for device, code, count in state.xid.counts():
            labels = state.labels.get(id(device))
            if labels is not None:
                yield Observation(count, labels.for_xid(code))


# --- the table ----------------------------------------------------------------------------


BINDING_KEY: Final = "otel_ml.gpu"
Observe = Callable[[GpuState, Any], Iterable[Observation]]
GAUGE, UPDOWN, COUNTER = "gauge", "updowncounter", "counter"

# (name, kind, unit, description, observe); each one's NVML source is in docs/gpu.md.
SPECS: Final[tuple[tuple[str, str, str, str, Observe], ...]] = (
    (
        sc.METRIC_HW_GPU_UTILIZATION,
        GAUGE,
        sc.UNIT_RATIO,
        "Fraction of time the GPU (hw.gpu.task=general), its encoder or its decoder was busy.",
        utilization,
    ),
    (
        sc.METRIC_HW_GPU_MEMORY_UTILIZATION,
        GAUGE,
        sc.UNIT_RATIO,
        "Fraction of GPU memory used (used / total).",
        memory_utilization,
    ),
    (sc.METRIC_HW_GPU_MEMORY_USAGE, UPDOWN, sc.UNIT_BYTES, "GPU memory used.", partial(memory, 0)),
    (sc.METRIC_HW_GPU_MEMORY_LIMIT, UPDOWN, sc.UNIT_BYTES, "Size of the GPU memory.", partial(memory, 1)),
    (sc.METRIC_HW_POWER, GAUGE, sc.UNIT_WATTS, "Instantaneous power drawn by the GPU.", partial(simple, r.POWER)),
    (
        sc.METRIC_HW_ENERGY,
        COUNTER,
        sc.UNIT_JOULES,
        "Energy consumed by the GPU since the driver loaded.",
        partial(simple, r.ENERGY),
    ),
    (
        sc.METRIC_HW_TEMPERATURE,
        GAUGE,
        sc.UNIT_CELSIUS,
        "GPU temperature sensors, by hw.sensor_location (die, memory).",
        temperature,
    ),
    (
        sc.METRIC_HW_ERRORS,
        COUNTER,
        sc.UNIT_ERROR,
        "Volatile ECC memory errors since the driver loaded, by error.type corrected/uncorrected.",
        errors,
    ),
    (
        sc.METRIC_HW_STATUS,
        UPDOWN,
        sc.UNIT_RATIO,
        "1 for the GPU's hw.state (ok, degraded: pages pending retirement or remapping; failed), 0 for the others.",
        status,
    ),
    (
        sc.METRIC_HW_GPU_IO,
        COUNTER,
        sc.UNIT_BYTES,
        "PCIe bytes received and transmitted by the GPU (fields NVML_FI_DEV_PCIE_COUNT_RX/TX_BYTES).",
        pcie_io,
    ),
    (
        sc.METRIC_HW_FAN_SPEED_RATIO,
        GAUGE,
        sc.UNIT_RATIO,
        "GPU fan speed as a fraction of its maximum (nvmlDeviceGetFanSpeed / 100).",
        fan,
    ),
    (
        sc.METRIC_HW_GPU_CLOCK,
        GAUGE,
        sc.UNIT_HERTZ,
        "Current SM and memory clocks, by hw.gpu.clock.domain (nvmlDeviceGetClockInfo).",
        clocks,
    ),
    (
        sc.METRIC_HW_GPU_THROTTLE,
        GAUGE,
        sc.UNIT_DIMENSIONLESS,
        "1 while the clocks are held down for hw.gpu.throttle.reason, else 0 (nvmlDeviceGetCurrentClocksEventReasons).",
        throttle,
    ),
    (
        sc.METRIC_HW_GPU_POWER_LIMIT,
        GAUGE,
        sc.UNIT_WATTS,
        "Power limit the driver enforces (nvmlDeviceGetEnforcedPowerLimit).",
        partial(simple, r.POWER_LIMIT),
    ),
    (
        sc.METRIC_HW_GPU_PCIE_REPLAYS,
        COUNTER,
        sc.UNIT_REPLAY,
        "PCIe link-level replays (retransmissions) since the driver loaded.",
        pcie_replays,
    ),
    (
        sc.METRIC_HW_GPU_NVLINK_IO,
        COUNTER,
        sc.UNIT_BYTES,
        "NVLink data bytes received and transmitted, summed over the links.",
        nvlink_io,
    ),
    (
        sc.METRIC_HW_GPU_SM_ACTIVITY,
        GAUGE,
        sc.UNIT_RATIO,
        "Fraction of SMs busy over the collection interval (GPM NVML_GPM_METRIC_SM_UTIL).",
        partial(gpm, 0),
    ),
    (
        sc.METRIC_HW_GPU_SM_OCCUPANCY,
        GAUGE,
        sc.UNIT_RATIO,
        "Resident warps over the SMs' maximum (GPM NVML_GPM_METRIC_SM_OCCUPANCY).",
        partial(gpm, 1),
    ),
    (
        sc.METRIC_HW_GPU_TENSOR_ACTIVITY,
        GAUGE,
        sc.UNIT_RATIO,
        "Fraction of cycles any tensor pipe was active (GPM NVML_GPM_METRIC_ANY_TENSOR_UTIL).",
        partial(gpm, 2),
    ),
    (
        sc.METRIC_HW_GPU_DRAM_ACTIVITY,
        GAUGE,
        sc.UNIT_RATIO,
        "DRAM bandwidth used over its maximum (GPM NVML_GPM_METRIC_DRAM_BW_UTIL).",
        partial(gpm, 3),
    ),
    (
        sc.METRIC_HW_GPU_INFO,
        GAUGE,
        sc.UNIT_DIMENSIONLESS,
        "1 per GPU: its identity (hw.vendor, hw.model, hw.driver_version, hw.serial_number, hw.firmware_version, "
        "ml.gpu.index), which the other GPU series leave out; join on hw.id.",
        info,
    ),
    (
        sc.METRIC_GPU_PROCESS_MEMORY_USAGE,
        UPDOWN,
        sc.UNIT_BYTES,
        "GPU memory used by a process (this one unless all processes are reported), by process.pid.",
        partial(per_process, r.PROCESSES),
    ),
    (
        sc.METRIC_GPU_PROCESS_UTILIZATION,
        GAUGE,
        sc.UNIT_RATIO,
        "SM utilisation of a process since the previous collection, by process.pid.",
        partial(per_process, r.PROCESS_UTILIZATION),
    ),
)
XID_SPEC: Final = (
    sc.METRIC_HW_GPU_XID_ERRORS,
    COUNTER,
    sc.UNIT_ERROR,
    "XID errors the driver reported (NVML events), by hw.gpu.xid.code.",
)


def binding(meter_provider: Any, meter: Meter) -> Binding[GpuState]:
    """The binding of ``meter_provider``'s GPU instruments, creating them the first time."""
    return binding_for(meter_provider, BINDING_KEY, partial(_create, meter))


def _snapshot_callback(bit: int, observe: Observe, state: GpuState, options: CallbackOptions) -> Iterable[Observation]:
    return observe(state, state.sampler.snapshot(bit))


def _xid_callback(state: GpuState, options: CallbackOptions) -> Iterable[Observation]:
    return xid_errors(state, [])


def _create(meter: Meter, bound: Binding[GpuState]) -> None:
    factories = {
        GAUGE: meter.create_observable_gauge,
        UPDOWN: meter.create_observable_up_down_counter,
        COUNTER: meter.create_observable_counter,
    }
    for bit, (name, kind, unit, description, observe) in enumerate(SPECS):
        callback = bound.callback(partial(_snapshot_callback, 1 << bit, observe))
        factories[kind](name, [callback], unit=unit, description=description)
    name, kind, unit, description = XID_SPEC
    factories[kind](name, [bound.callback(_xid_callback)], unit=unit, description=description)
