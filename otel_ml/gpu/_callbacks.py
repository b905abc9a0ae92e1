"""What each GPU instrument observes in a snapshot: values to observations, attribute dicts looked up.

Every function takes the bound :class:`GpuState` and the snapshot the sampler
handed this instrument, and yields nothing for a value that is absent (not
supported, or not read this time). The ``field`` values come from one
``nvmlDeviceGetFieldValues`` call; XID counts come from the watcher thread.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from types import ModuleType
from typing import Final

from opentelemetry.metrics import Observation

from otel_ml._core import semconv as sc
from otel_ml.gpu import _reads as r
from otel_ml.gpu._devices import Attributes
from otel_ml.gpu._labels import Labels
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
