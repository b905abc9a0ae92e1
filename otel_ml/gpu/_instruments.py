"""The GPU instruments: one table of name, kind, unit, description and what each observes.

They are created once per meter provider through :func:`otel_ml._core.observe.binding_for`
(the SDK cannot unregister an observable instrument); their callbacks read
the :class:`~otel_ml.gpu._callbacks.GpuState` the binding holds while
instrumented, and observe nothing while it holds none. Each callback owns one
bit of the sampler's "already consumed" mask, so a collection reads NVML once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial
from typing import Any, Final

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from otel_ml._core import semconv as sc
from otel_ml._core.observe import Binding, binding_for
from otel_ml.gpu import _callbacks as cb
from otel_ml.gpu import _reads as r
from otel_ml.gpu._callbacks import GpuState

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
        cb.utilization,
    ),
    (
        sc.METRIC_HW_GPU_MEMORY_UTILIZATION,
        GAUGE,
        sc.UNIT_RATIO,
        "Fraction of GPU memory used (used / total).",
        cb.memory_utilization,
    ),
    (sc.METRIC_HW_GPU_MEMORY_USAGE, UPDOWN, sc.UNIT_BYTES, "GPU memory used.", partial(cb.memory, 0)),
    (sc.METRIC_HW_GPU_MEMORY_LIMIT, UPDOWN, sc.UNIT_BYTES, "Size of the GPU memory.", partial(cb.memory, 1)),
    (sc.METRIC_HW_POWER, GAUGE, sc.UNIT_WATTS, "Instantaneous power drawn by the GPU.", partial(cb.simple, r.POWER)),
    (
        sc.METRIC_HW_ENERGY,
        COUNTER,
        sc.UNIT_JOULES,
        "Energy consumed by the GPU since the driver loaded.",
        partial(cb.simple, r.ENERGY),
    ),
    (
        sc.METRIC_HW_TEMPERATURE,
        GAUGE,
        sc.UNIT_CELSIUS,
        "GPU temperature sensors, by hw.sensor_location (die, memory).",
        cb.temperature,
    ),
    (
        sc.METRIC_HW_ERRORS,
        COUNTER,
        sc.UNIT_ERROR,
        "Volatile ECC memory errors since the driver loaded, by error.type corrected/uncorrected.",
        cb.errors,
    ),
    (
        sc.METRIC_HW_STATUS,
        UPDOWN,
        sc.UNIT_RATIO,
        "1 for the GPU's hw.state (ok, degraded: pages pending retirement or remapping; failed), 0 for the others.",
        cb.status,
    ),
    (
        sc.METRIC_HW_GPU_IO,
        COUNTER,
        sc.UNIT_BYTES,
        "PCIe bytes received and transmitted by the GPU (fields NVML_FI_DEV_PCIE_COUNT_RX/TX_BYTES).",
        cb.pcie_io,
    ),
    (
        sc.METRIC_HW_FAN_SPEED_RATIO,
        GAUGE,
        sc.UNIT_RATIO,
        "GPU fan speed as a fraction of its maximum (nvmlDeviceGetFanSpeed / 100).",
        cb.fan,
    ),
    (
        sc.METRIC_HW_GPU_CLOCK,
        GAUGE,
        sc.UNIT_HERTZ,
        "Current SM and memory clocks, by hw.gpu.clock.domain (nvmlDeviceGetClockInfo).",
        cb.clocks,
    ),
    (
        sc.METRIC_HW_GPU_THROTTLE,
        GAUGE,
        sc.UNIT_DIMENSIONLESS,
        "1 while the clocks are held down for hw.gpu.throttle.reason, else 0 (nvmlDeviceGetCurrentClocksEventReasons).",
        cb.throttle,
    ),
    (
        sc.METRIC_HW_GPU_POWER_LIMIT,
        GAUGE,
        sc.UNIT_WATTS,
        "Power limit the driver enforces (nvmlDeviceGetEnforcedPowerLimit).",
        partial(cb.simple, r.POWER_LIMIT),
    ),
    (
        sc.METRIC_HW_GPU_PCIE_REPLAYS,
        COUNTER,
        sc.UNIT_REPLAY,
        "PCIe link-level replays (retransmissions) since the driver loaded.",
        cb.pcie_replays,
    ),
    (
        sc.METRIC_HW_GPU_NVLINK_IO,
        COUNTER,
        sc.UNIT_BYTES,
        "NVLink data bytes received and transmitted, summed over the links.",
        cb.nvlink_io,
    ),
    (
        sc.METRIC_HW_GPU_SM_ACTIVITY,
        GAUGE,
        sc.UNIT_RATIO,
        "Fraction of SMs busy over the collection interval (GPM NVML_GPM_METRIC_SM_UTIL).",
        partial(cb.gpm, 0),
    ),
    (
        sc.METRIC_HW_GPU_SM_OCCUPANCY,
        GAUGE,
        sc.UNIT_RATIO,
        "Resident warps over the SMs' maximum (GPM NVML_GPM_METRIC_SM_OCCUPANCY).",
        partial(cb.gpm, 1),
    ),
    (
        sc.METRIC_HW_GPU_TENSOR_ACTIVITY,
        GAUGE,
        sc.UNIT_RATIO,
        "Fraction of cycles any tensor pipe was active (GPM NVML_GPM_METRIC_ANY_TENSOR_UTIL).",
        partial(cb.gpm, 2),
    ),
    (
        sc.METRIC_HW_GPU_DRAM_ACTIVITY,
        GAUGE,
        sc.UNIT_RATIO,
        "DRAM bandwidth used over its maximum (GPM NVML_GPM_METRIC_DRAM_BW_UTIL).",
        partial(cb.gpm, 3),
    ),
    (
        sc.METRIC_HW_GPU_INFO,
        GAUGE,
        sc.UNIT_DIMENSIONLESS,
        "1 per GPU: its identity (hw.vendor, hw.model, hw.driver_version, hw.serial_number, hw.firmware_version, "
        "ml.gpu.index), which the other GPU series leave out; join on hw.id.",
        cb.info,
    ),
    (
        sc.METRIC_GPU_PROCESS_MEMORY_USAGE,
        UPDOWN,
        sc.UNIT_BYTES,
        "GPU memory used by a process (this one unless all processes are reported), by process.pid.",
        partial(cb.per_process, r.PROCESSES),
    ),
    (
        sc.METRIC_GPU_PROCESS_UTILIZATION,
        GAUGE,
        sc.UNIT_RATIO,
        "SM utilisation of a process since the previous collection, by process.pid.",
        partial(cb.per_process, r.PROCESS_UTILIZATION),
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
    return cb.xid_errors(state, [])


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
