"""Every attribute dict a GPU observation carries, built once per device when instrumenting.

A collection then only looks dicts up: no dict is built per observation
(except the first time a new process ID shows up with all processes on).
"""

from __future__ import annotations

from types import ModuleType
from typing import Final

from otel_ml._core import semconv as sc
from otel_ml.gpu._devices import Attributes, Device

# Clock-event (throttle) reasons: attribute value -> pynvml bit constant. Bounded by construction.
THROTTLE_REASONS: Final = (
    ("gpu_idle", "nvmlClocksEventReasonGpuIdle"),
    ("applications_clocks_setting", "nvmlClocksEventReasonApplicationsClocksSetting"),
    ("sw_power_cap", "nvmlClocksEventReasonSwPowerCap"),
    ("hw_slowdown", "nvmlClocksEventReasonHwSlowdown"),
    ("sync_boost", "nvmlClocksEventReasonSyncBoost"),
    ("sw_thermal_slowdown", "nvmlClocksEventReasonSwThermalSlowdown"),
    ("hw_thermal_slowdown", "nvmlClocksEventReasonHwThermalSlowdown"),
    ("hw_power_brake_slowdown", "nvmlClocksEventReasonHwPowerBrakeSlowdown"),
    ("display_clock_setting", "nvmlClocksEventReasonDisplayClockSetting"),
)
STATES: Final = (sc.STATE_OK, sc.STATE_DEGRADED, sc.STATE_FAILED)


def _component(device: Device, kind: str, part: str, extra: Attributes) -> Attributes:
    """A sensor or fan of the GPU: its own ``hw.id``, the GPU as ``hw.parent`` (what joins it to ``hw.gpu.info``).

    The GPU's identity attributes come along only when the device's series carry them (``identity_on_series``).
    """
    identity = {key: value for key, value in device.attributes.items() if key in device.identity}
    return {
        sc.HW_ID: f"{device.uuid}/{part}",
        sc.HW_NAME: f"{device.name} {part}",
        sc.HW_TYPE: kind,
        sc.HW_PARENT: device.uuid,
        **identity,
        **extra,
    }


class Labels:
    """One device's attribute dicts."""

    __slots__ = (
        "by_pid",
        "clocks",
        "corrected",
        "decoder",
        "directions",
        "encoder",
        "fan",
        "general",
        "info",
        "own_pid",
        "series",
        "states",
        "temperature",
        "throttle",
        "uncorrected",
        "xid",
    )

    def __init__(self, nvml: ModuleType, device: Device, own_pid: int) -> None:
        extra = device.with_extra
        self.info = device.info
        self.series = device.attributes
        self.general = extra(sc.HW_GPU_TASK, sc.GPU_TASK_GENERAL)
        self.encoder = extra(sc.HW_GPU_TASK, sc.GPU_TASK_ENCODER)
        self.decoder = extra(sc.HW_GPU_TASK, sc.GPU_TASK_DECODER)
        self.corrected = extra(sc.ERROR_TYPE, sc.ERROR_CORRECTED)
        self.uncorrected = extra(sc.ERROR_TYPE, sc.ERROR_UNCORRECTED)
        self.clocks = (extra(sc.HW_GPU_CLOCK_DOMAIN, sc.CLOCK_SM), extra(sc.HW_GPU_CLOCK_DOMAIN, sc.CLOCK_MEMORY))
        self.throttle = tuple(  # a reason the installed pynvml does not name is left out
            (int(getattr(nvml, constant)), extra(sc.HW_GPU_THROTTLE_REASON, reason))
            for reason, constant in THROTTLE_REASONS
            if hasattr(nvml, constant)
        )
        self.states = tuple((state, extra(sc.HW_STATE, state)) for state in STATES)
        # (receive, transmit), for PCIe and NVLink alike
        self.directions = (
            extra(sc.NETWORK_IO_DIRECTION, sc.DIRECTION_RECEIVE),
            extra(sc.NETWORK_IO_DIRECTION, sc.DIRECTION_TRANSMIT),
        )
        self.temperature = {
            location: _component(device, sc.HW_TYPE_TEMPERATURE, location, {sc.HW_SENSOR_LOCATION: location})
            for location in (sc.SENSOR_DIE, sc.SENSOR_MEMORY)
        }
        self.fan = _component(device, sc.HW_TYPE_FAN, "fan", {})
        self.own_pid = extra(sc.PROCESS_PID, own_pid)
        self.by_pid: dict[int, Attributes] = {own_pid: self.own_pid}
        self.xid: dict[str, Attributes] = {}  # by XID code: bounded by the watcher (32 codes and "other")

    def for_xid(self, code: str) -> Attributes:
        """The dict of XID ``code``, built the first time the code is counted."""
        attributes = self.xid.get(code)
        if attributes is None:
            attributes = self.xid[code] = {**self.series, sc.HW_GPU_XID_CODE: code}
        return attributes

    def for_pid(self, pid: int, live: int) -> Attributes:
        """The dict of ``pid``; forgets exited processes once more than a bound of them piled up."""
        attributes = self.by_pid.get(pid)
        if attributes is None:
            if len(self.by_pid) > 4 * live + 16:
                own = next(iter(self.by_pid.values()))
                self.by_pid = {int(own[sc.PROCESS_PID]): own}
            attributes = self.by_pid[pid] = {**self.own_pid, sc.PROCESS_PID: pid}
        return attributes
