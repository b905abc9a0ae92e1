"""One NVML read of every device per collection, shared by all the GPU instruments.

A collection calls each observable instrument's callback in turn. The first
callback of a collection reads every device into a snapshot; the others reuse
it. "First" is tracked per instrument, not by a timer: a callback that already
consumed the current snapshot takes a new one, so every collection (from any
number of readers) sees values read since its own last visit, never older.

A failed read leaves its value out of that snapshot (never 0: a broken sensor
must not look like an idle GPU). ``NotSupported`` (or ``FunctionNotFound``, a
driver older than the call) turns that read off for that device, found by a
probe at instrument time. ``GpuIsLost`` stops the device
with one WARNING. Every other error is logged once per device, read and type.
"""

from __future__ import annotations

import logging
import threading
from types import ModuleType
from typing import Any

from otel_ml.gpu import _gpm
from otel_ml.gpu._devices import Device
from otel_ml.gpu._nvml import is_error
from otel_ml.gpu._reads import READS

_LOG = logging.getLogger(__name__)

Snapshot = list[tuple[Device, list[Any]]]


class Sampler:
    """Reads the chosen devices; ``snapshot(bit)`` is what each instrument callback calls."""

    def __init__(self, nvml: ModuleType, devices: list[Device]) -> None:
        self._nvml = nvml
        self._lock = threading.Lock()
        self._logged: set[tuple[str, str, str]] = set()
        self._snapshot: Snapshot = []
        self._consumed = -1  # every bit set: the first callback reads
        self._closed = False
        self._reads: list[tuple[Device, list[int]]] = [(d, list(range(len(READS)))) for d in devices]
        self._lost: set[int] = set()
        self._read()  # the probe: turns off what a device does not support, drops lost devices

    @property
    def devices(self) -> list[Device]:
        """The devices still reported (lost ones are dropped)."""
        return [device for device, _ in self._reads]

    def supports(self, device: Device, slot: int) -> bool:
        """Whether ``device`` answers read ``slot`` (so a None value means it failed this time)."""
        return any(d is device and slot in slots for d, slots in self._reads)

    def snapshot(self, bit: int) -> Snapshot:
        """The current snapshot, read anew if the caller (``bit``) already had this one."""
        with self._lock:
            if self._closed:
                return []
            if self._consumed & bit:
                self._snapshot = self._read()
                self._consumed = 0
            self._consumed |= bit
            return self._snapshot

    def close(self) -> None:
        """Stop reading (later callbacks observe nothing) and free what the reads hold."""
        with self._lock:
            self._closed = True
            self._snapshot = []
            for device, _slots in self._reads:
                _gpm.free(self._nvml, device)

    def _read(self) -> Snapshot:
        nvml = self._nvml
        snapshot: Snapshot = []
        for device, slots in self._reads:
            values: list[Any] = [None] * len(READS)
            for slot in tuple(slots):
                try:
                    values[slot] = READS[slot][1](nvml, device)
                except Exception as exc:  # noqa: BLE001 - a failed read is skipped, never raised
                    if self._failed(device, slots, slot, exc):
                        break
            else:
                snapshot.append((device, values))
        if self._lost:
            for device, _slots in self._reads:
                if id(device) in self._lost:
                    _gpm.free(nvml, device)
            self._reads = [(d, s) for d, s in self._reads if id(d) not in self._lost]
            self._lost.clear()
        return snapshot

    def _failed(self, device: Device, slots: list[int], slot: int, exc: BaseException) -> bool:
        """Handle a failed read; True when the device is lost."""
        nvml = self._nvml
        name = READS[slot][0]
        if is_error(nvml, exc, "NVMLError_GpuIsLost"):
            _LOG.warning("otel_ml: GPU %s (%s) is lost; it is no longer reported", device.name, device.uuid)
            self._lost.add(id(device))
            return True
        # NotSupported; FunctionNotFound (a driver older than the call); AttributeError (a pynvml older than it).
        if isinstance(exc, AttributeError) or any(
            is_error(nvml, exc, name) for name in ("NVMLError_NotSupported", "NVMLError_FunctionNotFound")
        ):
            slots.remove(slot)
            _LOG.debug("otel_ml: GPU %s does not support reading %s; not reported", device.uuid, name)
            return False
        key = (device.uuid, name, type(exc).__name__)
        if key not in self._logged:
            self._logged.add(key)
            _LOG.warning(
                "otel_ml: reading %s of GPU %s (%s) failed: %s (%s); skipped while it fails. Further %s "
                "errors of this read are not logged.",
                name,
                device.name,
                device.uuid,
                exc,
                type(exc).__name__,
                type(exc).__name__,
            )
        return False
