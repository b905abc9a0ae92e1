"""Which GPUs to report, and everything about them that never changes, every attribute dict included.

Handles, UUIDs, names and attribute dicts are read once here, at instrument
time, so a collection only reads the values that change.

A device has two attribute dicts. ``attributes`` goes on every series: only
what selects and joins (``hw.id``, ``hw.name``, ``hw.type``, and ``hw.parent``
for a MIG instance). ``identity`` (vendor, model, driver, serial, firmware,
indices) goes on the one ``hw.gpu.info`` series per device: the SDK cleans and
hashes every attribute of every data point on every collection, so ten
attributes on each of a GPU's ~40 series cost more than all of its NVML reads.
``identity_on_series`` puts them back on every series, at that cost.

``CUDA_VISIBLE_DEVICES`` is honoured as CUDA reads it: comma-separated
indices or UUIDs (``GPU-...``, ``MIG-...``, unique prefixes allowed), parsing
stops at the first entry that matches nothing, an empty value means no device
and an unset one means all. Indices are NVML's (nvidia-smi's), which are CUDA's
when ``CUDA_DEVICE_ORDER=PCI_BUS_ID``; UUIDs are unambiguous either way.

:class:`Labels` holds every attribute dict a GPU observation carries, built
once per device when instrumenting: a collection then only looks dicts up, no
dict is built per observation (except the first time a new process ID shows
up with all processes on).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Final

from otel_ml._core import semconv as sc
from otel_ml.gpu._nvml import text

_LOG = logging.getLogger(__name__)

Attributes = dict[str, Any]


@dataclass
class Device:
    """One reported GPU or MIG instance, and the little state its reads carry between collections."""

    handle: Any
    uuid: str
    index: int
    attributes: Attributes
    identity: Attributes = field(default_factory=dict)
    children: list[Device] = field(default_factory=list)
    # Set by the reads: the NVML field ids this device answers (probed once), its GPM
    # samples, and the newest per-process utilisation sample seen (NVML's microseconds).
    fields: tuple[Any, ...] | None = None
    gpm: Any = None
    process_seen_us: int = 0

    @property
    def name(self) -> str:
        """``gpu0``, or ``gpu0/mig1`` for a MIG instance."""
        return str(self.attributes[sc.HW_NAME])

    def with_extra(self, key: str, value: Any) -> Attributes:
        """A new attribute dict: this device's plus one more key (built once, not per collection)."""
        return {**self.attributes, key: value}

    @property
    def info(self) -> Attributes:
        """The ``hw.gpu.info`` series' attributes: the series attributes and the identity (a new dict)."""
        return {**self.attributes, **self.identity}


def discover(
    nvml: ModuleType, *, all_devices: bool, visible: str | None, identity_on_series: bool = False
) -> list[Device]:
    """Read every device (and its MIG instances) once, then keep those to report."""
    driver = text(nvml.nvmlSystemGetDriverVersion())
    physical: list[Device] = []
    for index in range(nvml.nvmlDeviceGetCount()):
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        device = _describe(nvml, handle, driver, index)
        device.children = list(_mig_instances(nvml, device, driver))
        physical.append(device)
    if all_devices or visible is None:
        chosen = physical
    else:
        chosen = _visible(physical, visible)
    found: list[Device] = []
    for device in chosen:
        found.append(device)
        found.extend(device.children)
    if identity_on_series:
        for device in found:
            device.attributes = device.info
    return found


def _describe(
    nvml: ModuleType, handle: Any, driver: str, index: int, parent: Device | None = None, slot: int = 0
) -> Device:
    uuid = text(nvml.nvmlDeviceGetUUID(handle))
    attributes: Attributes = {sc.HW_ID: uuid, sc.HW_NAME: f"gpu{index}", sc.HW_TYPE: sc.HW_TYPE_GPU}
    identity: Attributes = {
        sc.HW_VENDOR: sc.HW_VENDOR_NVIDIA,
        sc.HW_MODEL: text(nvml.nvmlDeviceGetName(handle)),
        sc.HW_DRIVER_VERSION: driver,
        sc.ML_GPU_INDEX: index,
    }
    if parent is None:
        for key, read in (
            (sc.HW_SERIAL_NUMBER, nvml.nvmlDeviceGetSerial),
            (sc.HW_FIRMWARE_VERSION, nvml.nvmlDeviceGetVbiosVersion),  # the VBIOS: the GPU's firmware
        ):
            try:
                identity[key] = text(read(handle))
            except nvml.NVMLError:
                pass  # NotSupported on consumer boards (serial): the attribute is left out
        return Device(handle, uuid, index, attributes, identity)
    attributes[sc.HW_NAME] = f"gpu{index}/mig{slot}"
    attributes[sc.HW_PARENT] = parent.uuid
    identity[sc.ML_GPU_MIG_INDEX] = slot
    return Device(handle, uuid, index, attributes, identity)


def _mig_instances(nvml: ModuleType, parent: Device, driver: str) -> list[Device]:
    """The parent's MIG instances, or none when MIG is off or unsupported."""
    try:
        current, _pending = nvml.nvmlDeviceGetMigMode(parent.handle)
        if current != nvml.NVML_DEVICE_MIG_ENABLE:
            return []
        slots = nvml.nvmlDeviceGetMaxMigDeviceCount(parent.handle)
    except nvml.NVMLError:
        return []  # NotSupported on GPUs without MIG: the usual case
    instances: list[Device] = []
    for slot in range(slots):
        try:
            handle = nvml.nvmlDeviceGetMigDeviceHandleByIndex(parent.handle, slot)
        except nvml.NVMLError:
            continue  # an empty slot (NotFound)
        instances.append(_describe(nvml, handle, driver, parent.index, parent, slot))
    return instances


def _visible(physical: list[Device], visible: str) -> list[Device]:
    """The physical devices ``CUDA_VISIBLE_DEVICES`` names, in its order, MIG instances filtered."""
    chosen: list[Device] = []
    for token in (part.strip() for part in visible.split(",")):
        match = _match(physical, token)
        if match is None:
            if token:
                _LOG.warning(
                    "otel_ml: CUDA_VISIBLE_DEVICES entry %r matches no GPU index or UUID; like CUDA, the "
                    "entries from it on are ignored",
                    token,
                )
            break
        device, mig = match
        if mig is not None:
            # A MIG instance names its parent too: its power and temperature are the instance's.
            known = next((d for d in chosen if d.uuid == device.uuid), None)
            if known is None:
                known = Device(device.handle, device.uuid, device.index, device.attributes, device.identity)
                chosen.append(known)
            if mig not in known.children:
                known.children.append(mig)
        else:
            chosen = [d for d in chosen if d.uuid != device.uuid]
            chosen.append(device)  # the whole GPU, every MIG instance included
    return chosen


def _match(physical: list[Device], token: str) -> tuple[Device, Device | None] | None:
    if token.isdigit():
        index = int(token)
        return (physical[index], None) if index < len(physical) else None
    if not token:
        return None
    for device in physical:
        if device.uuid.startswith(token):
            return device, None
        for mig in device.children:
            if mig.uuid.startswith(token):
                return device, mig
    return None


# --- every attribute dict an observation carries --------------------------------------------


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
