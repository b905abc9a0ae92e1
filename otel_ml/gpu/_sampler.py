"""One NVML read of every device per collection, shared by all the GPU instruments, and the reads it makes.

A collection calls each observable instrument's callback in turn. The first
callback of a collection reads every device into a snapshot; the others reuse
it. "First" is tracked per instrument, not by a timer: a callback that already
consumed the current snapshot takes a new one, so every collection (from any
number of readers) sees values read since its own last visit, never older.

Each read (one function per NVML call, in the :data:`READS` table the
:class:`Sampler` walks) takes the module and a
:class:`~otel_ml.gpu._devices.Device` and returns the value in the unit
otel_ml reports (watts, hertz, ratios 0-1, bytes), or raises NVML's error.

A failed read leaves its value out of that snapshot (never 0: a broken sensor
must not look like an idle GPU). ``NotSupported`` (or ``FunctionNotFound``, a
driver older than the call) turns that read off for that device, found by a
probe at instrument time. ``GpuIsLost`` stops the device
with one WARNING. Every other error is logged once per device, read and type.

The reads run on the NVML thread (:mod:`otel_ml.gpu._driver`), never on the
collecting thread: a collection waits at most
:data:`~otel_ml.gpu._driver.READ_DEADLINE` for them, and one that misses it
(a wedged driver) observes no GPU points, as do the collections after it
until NVML answers again, without waiting.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any, Final, NamedTuple

from otel_ml.gpu import _gpm
from otel_ml.gpu._devices import Device
from otel_ml.gpu._driver import READ_DEADLINE, Driver, Stuck, driver
from otel_ml.gpu._gpm import read_gpm
from otel_ml.gpu._nvml import is_error

_LOG = logging.getLogger(__name__)

Read = Callable[[ModuleType, Device], Any]

ALL_LINKS: Final = 0xFFFFFFFF
"""NVML's scope id for "summed over every NVLink" in the NVLink field values."""
# NVML value types (nvmlValueType_t) -> the member of nvmlValue_t that holds the value.
_VALUE_MEMBERS: Final = ("dVal", "uiVal", "ulVal", "ullVal", "sllVal", "siVal", "usVal")


def _utilization(nvml: ModuleType, d: Device) -> float:
    return nvml.nvmlDeviceGetUtilizationRates(d.handle).gpu / 100.0


def _encoder(nvml: ModuleType, d: Device) -> float:
    return nvml.nvmlDeviceGetEncoderUtilization(d.handle)[0] / 100.0  # [percent, sampling period us]


def _decoder(nvml: ModuleType, d: Device) -> float:
    return nvml.nvmlDeviceGetDecoderUtilization(d.handle)[0] / 100.0


def _memory(nvml: ModuleType, d: Device) -> tuple[int, int]:
    info = nvml.nvmlDeviceGetMemoryInfo(d.handle)
    return int(info.used), int(info.total)


def _power(nvml: ModuleType, d: Device) -> float:
    return nvml.nvmlDeviceGetPowerUsage(d.handle) / 1000.0  # mW -> W, fractions kept


def _power_limit(nvml: ModuleType, d: Device) -> float:
    return nvml.nvmlDeviceGetEnforcedPowerLimit(d.handle) / 1000.0  # mW -> W


def _energy(nvml: ModuleType, d: Device) -> float:
    return nvml.nvmlDeviceGetTotalEnergyConsumption(d.handle) / 1000.0  # mJ since driver load -> J


def _temperature(nvml: ModuleType, d: Device) -> float:
    return float(nvml.nvmlDeviceGetTemperature(d.handle, nvml.NVML_TEMPERATURE_GPU))


def _fan(nvml: ModuleType, d: Device) -> float:
    return nvml.nvmlDeviceGetFanSpeed(d.handle) / 100.0  # percent of the fan's maximum (may exceed 100)


def _clock_sm(nvml: ModuleType, d: Device) -> float:
    return nvml.nvmlDeviceGetClockInfo(d.handle, nvml.NVML_CLOCK_SM) * 1e6  # MHz -> Hz


def _clock_memory(nvml: ModuleType, d: Device) -> float:
    return nvml.nvmlDeviceGetClockInfo(d.handle, nvml.NVML_CLOCK_MEM) * 1e6


def _clock_events(nvml: ModuleType, d: Device) -> int:
    return int(nvml.nvmlDeviceGetCurrentClocksEventReasons(d.handle))  # a bit mask of reasons


def _ecc_corrected(nvml: ModuleType, d: Device) -> int:
    kind = nvml.NVML_MEMORY_ERROR_TYPE_CORRECTED
    return int(nvml.nvmlDeviceGetTotalEccErrors(d.handle, kind, nvml.NVML_VOLATILE_ECC))


def _ecc_uncorrected(nvml: ModuleType, d: Device) -> int:
    kind = nvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED
    return int(nvml.nvmlDeviceGetTotalEccErrors(d.handle, kind, nvml.NVML_VOLATILE_ECC))


def _retired_pages_pending(nvml: ModuleType, d: Device) -> bool:
    return bool(nvml.nvmlDeviceGetRetiredPagesPendingStatus(d.handle) == nvml.NVML_FEATURE_ENABLED)


def _remapped_rows(nvml: ModuleType, d: Device) -> tuple[bool, bool]:
    _corrected, _uncorrected, pending, failure = nvml.nvmlDeviceGetRemappedRows(d.handle)
    return bool(pending), bool(failure)


def _processes(nvml: ModuleType, d: Device) -> tuple[tuple[int, int], ...]:
    # usedGpuMemory is None where NVML cannot tell (Windows WDDM, some MIG setups): left out, not 0.
    return tuple(
        (int(p.pid), int(p.usedGpuMemory))
        for p in nvml.nvmlDeviceGetComputeRunningProcesses(d.handle)
        if p.usedGpuMemory is not None
    )


def _process_utilization(nvml: ModuleType, d: Device) -> tuple[tuple[int, float], ...]:
    """SM utilisation per process over the samples NVML took since the previous collection."""
    try:
        samples = nvml.nvmlDeviceGetProcessUtilization(d.handle, d.process_seen_us)
    except nvml.NVMLError as exc:
        # NotFound (or pynvml's NVMLError(SUCCESS) for an empty buffer): no process ran a kernel since.
        if getattr(exc, "value", None) in (nvml.NVML_SUCCESS, nvml.NVML_ERROR_NOT_FOUND):
            return ()
        raise
    newest: dict[int, tuple[int, float]] = {}
    for sample in samples:
        pid, stamp = int(sample.pid), int(sample.timeStamp)
        if pid not in newest or stamp >= newest[pid][0]:
            newest[pid] = (stamp, sample.smUtil / 100.0)
        d.process_seen_us = max(d.process_seen_us, stamp)
    return tuple((pid, ratio) for pid, (_stamp, ratio) in newest.items())


class FieldIds(NamedTuple):
    """The NVML field ids one ``nvmlDeviceGetFieldValues`` call reads, by what each one is.

    None where the installed pynvml predates the field (the PCIe byte counters
    came after nvidia-ml-py 12.535): that field is then not read.
    """

    memory_temperature: int | None
    pcie_rx: int | None
    pcie_tx: int | None
    pcie_replays: int | None
    nvlink_rx: int | None
    nvlink_tx: int | None


def field_ids(nvml: ModuleType) -> FieldIds:
    """This module's field ids, from pynvml's constants."""
    return FieldIds(
        *(
            getattr(nvml, name, None)
            for name in (
                "NVML_FI_DEV_MEMORY_TEMP",
                "NVML_FI_DEV_PCIE_COUNT_RX_BYTES",
                "NVML_FI_DEV_PCIE_COUNT_TX_BYTES",
                "NVML_FI_DEV_PCIE_REPLAY_COUNTER",
                "NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX",
                "NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX",
            )
        )
    )


def _requests(nvml: ModuleType) -> tuple[tuple[int, int], ...]:
    """(field id, scope id) pairs: the NVLink counters summed over every link, the others device-wide."""
    ids = field_ids(nvml)
    nvlink = (ids.nvlink_rx, ids.nvlink_tx)
    return tuple((f, ALL_LINKS if f in nvlink else 0) for f in ids if f is not None)


def _fields(nvml: ModuleType, d: Device) -> dict[int, float]:
    """Field id -> value, for the fields this device answers; the first call probes which those are."""
    wanted = _requests(nvml) if d.fields is None else d.fields
    if not wanted:
        raise nvml.NVMLError(nvml.NVML_ERROR_NOT_SUPPORTED)
    values = nvml.nvmlDeviceGetFieldValues(d.handle, list(wanted))
    if d.fields is None:  # the probe: keep what the device supports (no NVLink: no NVLink fields)
        d.fields = tuple(
            f for f, v in zip(wanted, values, strict=True) if v.nvmlReturn != nvml.NVML_ERROR_NOT_SUPPORTED
        )
        if not d.fields:
            raise nvml.NVMLError(nvml.NVML_ERROR_NOT_SUPPORTED)
    return {
        int(v.fieldId): getattr(v.value, _VALUE_MEMBERS[v.valueType])
        for v in values
        if v.nvmlReturn == nvml.NVML_SUCCESS and 0 <= v.valueType < len(_VALUE_MEMBERS)
    }


# Slot numbers in a device's value list, and the read that fills each.
READS: Final[tuple[tuple[str, Read], ...]] = (
    ("utilization", _utilization),
    ("encoder utilization", _encoder),
    ("decoder utilization", _decoder),
    ("memory", _memory),
    ("power", _power),
    ("power limit", _power_limit),
    ("energy", _energy),
    ("temperature", _temperature),
    ("fan speed", _fan),
    ("SM clock", _clock_sm),
    ("memory clock", _clock_memory),
    ("clock event reasons", _clock_events),
    ("ecc_corrected", _ecc_corrected),
    ("ecc_uncorrected", _ecc_uncorrected),
    ("retired pages", _retired_pages_pending),
    ("remapped rows", _remapped_rows),
    ("processes", _processes),
    ("process utilization", _process_utilization),
    ("field values", _fields),
    ("GPM metrics", read_gpm),
)
UTILIZATION, ENCODER, DECODER, MEMORY, POWER, POWER_LIMIT, ENERGY, TEMPERATURE, FAN = range(9)
CLOCK_SM, CLOCK_MEMORY, CLOCK_EVENTS, ECC_CORRECTED, ECC_UNCORRECTED, RETIRED, REMAPPED = range(9, 16)
PROCESSES, PROCESS_UTILIZATION, FIELDS, GPM = range(16, 20)


# --- the sampler --------------------------------------------------------------------------


Snapshot = list[tuple[Device, list[Any]]]


class Sampler:
    """Reads the chosen devices; ``snapshot(bit)`` is what each instrument callback calls.

    Built on the NVML thread (its probe reads NVML); ``snapshot`` may be called from any thread.
    """

    def __init__(self, nvml: ModuleType, devices: list[Device], nvml_thread: Driver = driver) -> None:
        self._nvml = nvml
        self._driver = nvml_thread
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
        """The current snapshot, read anew if the caller (``bit``) already had this one.

        Empty when NVML misses :data:`READ_DEADLINE` (or still has not answered an earlier read).
        """
        # A second collection waits here at most for the first one's deadline.
        if not self._lock.acquire(timeout=READ_DEADLINE + 1.0):
            return []
        try:
            if self._closed:
                return []
            if self._consumed & bit:
                self._snapshot = []
                self._consumed = 0
                try:
                    self._snapshot = self._driver.call("reading the GPUs", self._read, READ_DEADLINE)
                except Stuck:
                    pass  # logged once by the driver; this collection has no GPU points
            self._consumed |= bit
            return self._snapshot
        finally:
            self._lock.release()

    def close(self) -> None:
        """Stop reading (later callbacks observe nothing); :meth:`free` then frees what the reads hold."""
        with self._lock:
            self._closed = True
            self._snapshot = []

    def free(self) -> None:
        """Free what the reads hold (NVML calls: made on the NVML thread, after :meth:`close`)."""
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
