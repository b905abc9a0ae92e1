"""The GPU instruments and their callbacks, named by the OpenTelemetry hardware conventions.

The SDK cannot unregister an observable instrument, and creating one twice on
the same meter returns the first (with its first callbacks). So the
instruments are created once per meter provider, with callbacks bound to a
:class:`GpuObserver` that points at the current sampler, or at nothing while
uninstrumented.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Iterable, Iterator
from typing import Any

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from otel_ml import _semconv as sc
from otel_ml.gpu import _sampler as s
from otel_ml.gpu._devices import Attributes, Device
from otel_ml.gpu._sampler import Sampler, Snapshot


class _Labels:
    """Per-device attribute dicts, built once when instrumenting, reused by every collection."""

    __slots__ = ("by_pid", "corrected", "own_pid", "uncorrected", "utilization")

    def __init__(self, device: Device, own_pid: int) -> None:
        self.utilization = device.with_extra(sc.HW_GPU_TASK, sc.GPU_TASK_GENERAL)
        self.corrected = device.with_extra(sc.ERROR_TYPE, sc.ERROR_ECC_CORRECTED)
        self.uncorrected = device.with_extra(sc.ERROR_TYPE, sc.ERROR_ECC_UNCORRECTED)
        self.own_pid = device.with_extra(sc.PROCESS_PID, own_pid)
        self.by_pid: dict[int, Attributes] = {own_pid: self.own_pid}


class GpuObserver:
    """The instruments' callbacks; each yields nothing while no sampler is bound."""

    def __init__(self) -> None:
        self._sampler: Sampler | None = None
        self._labels: dict[int, _Labels] = {}
        self._all_processes = False
        self._pid = os.getpid()

    def bind(self, sampler: Sampler, *, all_processes: bool) -> None:
        """Observe ``sampler``'s devices from now on."""
        self._pid = os.getpid()
        self._labels = {id(d): _Labels(d, self._pid) for d in sampler.devices}
        self._all_processes = all_processes
        self._sampler = sampler

    def unbind(self) -> None:
        """Observe nothing from now on."""
        self._sampler = None

    def _snapshot(self, bit: int) -> Snapshot:
        sampler = self._sampler
        return sampler.snapshot(bit) if sampler is not None else []

    def _simple(self, bit: int, slot: int) -> Iterator[Observation]:
        for device, values in self._snapshot(bit):
            value = values[slot]
            if value is not None:
                yield Observation(value, device.attributes)

    def _memory(self, bit: int, part: int) -> Iterator[Observation]:
        for device, values in self._snapshot(bit):
            memory = values[s.MEMORY]
            if memory is not None:
                yield Observation(memory[part], device.attributes)

    def utilization(self, options: CallbackOptions) -> Iterable[Observation]:
        for device, values in self._snapshot(1 << 0):
            value = values[s.UTILIZATION]
            if value is not None:
                yield Observation(value, self._labels[id(device)].utilization)

    def memory_utilization(self, options: CallbackOptions) -> Iterable[Observation]:
        for device, values in self._snapshot(1 << 1):
            memory = values[s.MEMORY]
            if memory is not None and memory[1] > 0:
                yield Observation(memory[0] / memory[1], device.attributes)

    def memory_usage(self, options: CallbackOptions) -> Iterable[Observation]:
        return self._memory(1 << 2, 0)

    def memory_limit(self, options: CallbackOptions) -> Iterable[Observation]:
        return self._memory(1 << 3, 1)

    def power(self, options: CallbackOptions) -> Iterable[Observation]:
        return self._simple(1 << 4, s.POWER)

    def energy(self, options: CallbackOptions) -> Iterable[Observation]:
        return self._simple(1 << 5, s.ENERGY)

    def temperature(self, options: CallbackOptions) -> Iterable[Observation]:
        return self._simple(1 << 6, s.TEMPERATURE)

    def errors(self, options: CallbackOptions) -> Iterable[Observation]:
        for device, values in self._snapshot(1 << 7):
            labels = self._labels[id(device)]
            if values[s.ECC_CORRECTED] is not None:
                yield Observation(values[s.ECC_CORRECTED], labels.corrected)
            if values[s.ECC_UNCORRECTED] is not None:
                yield Observation(values[s.ECC_UNCORRECTED], labels.uncorrected)

    def process_memory(self, options: CallbackOptions) -> Iterable[Observation]:
        for device, values in self._snapshot(1 << 8):
            processes = values[s.PROCESSES]
            if not processes:
                continue
            labels = self._labels[id(device)]
            if not self._all_processes:
                for pid, used in processes:
                    if pid == self._pid:
                        yield Observation(used, labels.own_pid)
                continue
            if len(labels.by_pid) > 4 * len(processes) + 16:  # forget exited processes, bounded
                labels.by_pid = {self._pid: labels.own_pid}
            for pid, used in processes:
                attributes = labels.by_pid.get(pid)
                if attributes is None:
                    attributes = labels.by_pid[pid] = {**labels.own_pid, sc.PROCESS_PID: pid}
                yield Observation(used, attributes)


_observers: weakref.WeakKeyDictionary[Any, GpuObserver] = weakref.WeakKeyDictionary()


def observer_for(meter_provider: Any, meter: Meter) -> GpuObserver:
    """The observer of ``meter_provider``'s GPU instruments, creating both the first time."""
    observer = _observers.get(meter_provider)
    if observer is None:
        observer = GpuObserver()
        _create(meter, observer)
        _observers[meter_provider] = observer
    return observer


def _create(meter: Meter, o: GpuObserver) -> None:
    gauge, updown, counter = (
        meter.create_observable_gauge,
        meter.create_observable_up_down_counter,
        (meter.create_observable_counter),
    )
    gauge(
        sc.METRIC_HW_GPU_UTILIZATION,
        [o.utilization],
        unit=sc.UNIT_RATIO,
        description="Fraction of time the GPU was busy running kernels (NVML utilization.gpu / 100).",
    )
    gauge(
        sc.METRIC_HW_GPU_MEMORY_UTILIZATION,
        [o.memory_utilization],
        unit=sc.UNIT_RATIO,
        description="Fraction of GPU memory used (used / total).",
    )
    updown(sc.METRIC_HW_GPU_MEMORY_USAGE, [o.memory_usage], unit=sc.UNIT_BYTES, description="GPU memory used.")
    updown(sc.METRIC_HW_GPU_MEMORY_LIMIT, [o.memory_limit], unit=sc.UNIT_BYTES, description="Size of the GPU memory.")
    gauge(sc.METRIC_HW_POWER, [o.power], unit=sc.UNIT_WATTS, description="Instantaneous power drawn by the GPU.")
    counter(
        sc.METRIC_HW_ENERGY,
        [o.energy],
        unit=sc.UNIT_JOULES,
        description="Energy consumed by the GPU since the driver loaded, where the device reports it.",
    )
    gauge(sc.METRIC_HW_TEMPERATURE, [o.temperature], unit=sc.UNIT_CELSIUS, description="GPU core temperature.")
    counter(
        sc.METRIC_HW_ERRORS,
        [o.errors],
        unit=sc.UNIT_ERROR,
        description="ECC memory errors since the driver loaded, by error.type.",
    )
    updown(
        sc.METRIC_GPU_PROCESS_MEMORY_USAGE,
        [o.process_memory],
        unit=sc.UNIT_BYTES,
        description="GPU memory used by a process (this one unless all processes are reported), by process.pid.",
    )
