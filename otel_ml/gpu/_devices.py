"""Which GPUs to report, and everything about them that never changes.

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
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

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
