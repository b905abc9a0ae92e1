"""XID errors: the driver's own fault reports (79 "fallen off the bus", 48 "double-bit ECC", ...).

NVML delivers them as events, not as a value to poll, so ONE daemon thread
waits on one event set for every device and counts them; the collection only
reads the counts (no NVML call). The wait is bounded (``WAIT_MS``), so
:meth:`XidWatcher.stop` returns within about that time at uninstrument and at
exit, and the thread being a daemon means it can never hold the interpreter
up. Codes are bounded: past ``MAX_CODES`` distinct codes on a device, new ones
count as ``other``. Each code is logged once per device.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from types import ModuleType
from typing import Final

from otel_ml._core import semconv as sc
from otel_ml.gpu._devices import Device
from otel_ml.gpu._nvml import is_error, text

_LOG = logging.getLogger(__name__)

WAIT_MS: Final = 200
MAX_CODES: Final = 32


class XidWatcher:
    """Counts XID events per (device, code); ``counts()`` is what the collection reads."""

    def __init__(self, nvml: ModuleType, devices: list[Device]) -> None:
        self._nvml = nvml
        self._by_uuid = {d.uuid: d for d in devices if sc.HW_PARENT not in d.attributes}  # physical GPUs
        self._counts: Counter[tuple[str, str]] = Counter()
        self._codes: dict[str, set[str]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._events = None

    @property
    def watching(self) -> bool:
        """Whether the watcher thread is running."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> bool:
        """Register every device that supports XID events; start the thread if any does."""
        nvml = self._nvml
        xid = nvml.nvmlEventTypeXidCriticalError
        try:
            events = nvml.nvmlEventSetCreate()
        except nvml.NVMLError as exc:
            _LOG.debug("otel_ml: no XID events: nvmlEventSetCreate failed: %s", exc)
            return False
        registered = 0
        for device in self._by_uuid.values():
            try:
                if nvml.nvmlDeviceGetSupportedEventTypes(device.handle) & xid:
                    nvml.nvmlDeviceRegisterEvents(device.handle, xid, events)
                    registered += 1
            except nvml.NVMLError as exc:
                _LOG.debug("otel_ml: no XID events for GPU %s: %s", device.uuid, exc)
        if not registered:
            self._free(events)
            return False
        self._events = events
        self._thread = threading.Thread(target=self._run, name="otel_ml-gpu-xid", daemon=True)
        self._thread.start()
        return True

    def stop(self, *, join: bool = True) -> None:
        """Stop the thread; waits at most ``4 * WAIT_MS`` for it with ``join`` (the thread frees the event set)."""
        self._stop.set()
        thread = self._thread
        if join and thread is not None and thread is not threading.current_thread():
            thread.join(timeout=4 * WAIT_MS / 1000)

    def counts(self) -> list[tuple[Device, str, int]]:
        """(device, code, count) for every code seen so far."""
        return [(self._by_uuid[uuid], code, n) for (uuid, code), n in list(self._counts.items())]

    def _run(self) -> None:
        nvml = self._nvml
        try:
            while not self._stop.is_set():
                try:
                    data = nvml.nvmlEventSetWait(self._events, WAIT_MS)
                except nvml.NVMLError as exc:
                    if is_error(nvml, exc, "NVMLError_Timeout"):
                        continue
                    _LOG.warning("otel_ml: watching GPU XID errors stopped: %s (%s)", exc, type(exc).__name__)
                    return
                if data.eventType & nvml.nvmlEventTypeXidCriticalError:
                    self._count(nvml, data.device, int(data.eventData))
        finally:
            self._free(self._events)

    def _count(self, nvml: ModuleType, handle: object, code: int) -> None:
        try:
            device = self._by_uuid.get(text(nvml.nvmlDeviceGetUUID(handle)))
        except nvml.NVMLError:
            device = None  # a GPU lost with its XID (79): count it nowhere rather than guess
        if device is None:
            _LOG.warning("otel_ml: XID %d on a GPU that NVML can no longer name", code)
            return
        seen = self._codes.setdefault(device.uuid, set())
        label = str(code)
        if label not in seen:
            if len(seen) >= MAX_CODES:
                label = sc.XID_OTHER
            else:
                seen.add(label)
                _LOG.warning(
                    "otel_ml: GPU %s (%s) reported XID %d; see NVIDIA's XID catalogue. Further XID %d errors "
                    "of this GPU are counted (hw.gpu.xid.errors), not logged.",
                    device.name,
                    device.uuid,
                    code,
                    code,
                )
        self._counts[(device.uuid, label)] += 1

    def _free(self, events: object) -> None:
        if events is None:
            return
        try:
            self._nvml.nvmlEventSetFree(events)
        except self._nvml.NVMLError as exc:
            _LOG.debug("otel_ml: nvmlEventSetFree failed: %s", exc)
