"""GPU metrics from NVML, named by the OpenTelemetry hardware conventions (``hw.*``).

Usage::

    from otel_ml.gpu import GpuInstrumentor
    GpuInstrumentor().instrument()   # or otel_ml.instrument(), or opentelemetry-instrument

or, as a node-level exporter beside the jobs: ``otel-ml gpu --host 0.0.0.0``.

Configuration: the ``gpu_all_devices``, ``gpu_all_processes`` and
``gpu_identity_on_series`` options, or ``OTEL_ML_GPU_ALL_DEVICES`` /
``OTEL_ML_GPU_ALL_PROCESSES`` / ``OTEL_ML_GPU_IDENTITY_ON_SERIES``. By default
only the devices ``CUDA_VISIBLE_DEVICES`` lets this process use are reported,
per-process memory only for this process, and each GPU's identity (vendor,
model, driver, serial, firmware) only on its ``hw.gpu.info`` series.

API: :class:`GpuInstrumentor`; ``uninstrument()`` stops the series, the XID
watcher thread and NVML (the observable instruments, which the SDK cannot
drop, are made once per meter provider and report nothing while
uninstrumented).

Without a GPU (``nvmlInit`` fails with ``LibraryNotFound``) one INFO line is
logged and nothing is registered. Every NVML call runs on one NVML thread
(:mod:`otel_ml.gpu._driver`) with a deadline: a wedged driver holds neither
``instrument()`` (at most 2 s, then GPU metrics start whenever NVML answers),
nor a scrape, nor the exit. ``pynvml`` (from ``nvidia-ml-py``) is
imported when instrumenting, never at ``import otel_ml``.
"""

from __future__ import annotations

import logging
import os
import threading
from functools import partial
from types import ModuleType
from typing import Any

from opentelemetry import metrics
from opentelemetry.metrics import Meter
from opentelemetry.trace import Tracer

from otel_ml._core.instrumentor import OtelMLInstrumentor
from otel_ml._core.observe import Binding
from otel_ml.gpu import _nvml
from otel_ml.gpu._devices import discover
from otel_ml.gpu._driver import CLOSE_WAIT, START_WAIT, Stuck, driver
from otel_ml.gpu._instruments import GpuState, binding
from otel_ml.gpu._options import OPTIONS, GpuOptions
from otel_ml.gpu._sampler import Sampler
from otel_ml.gpu._xid import XidWatcher
from otel_ml.gpu.package import _instruments_any

__all__ = ["GpuInstrumentor"]

_LOG = logging.getLogger(__name__)


class GpuInstrumentor(OtelMLInstrumentor):
    """Observable GPU gauges and counters read from NVML once per collection.

    Keyword arguments of ``instrument()``: ``meter_provider``,
    ``gpu_all_devices``, ``gpu_all_processes``, ``gpu_identity_on_series``, and ``nvml`` (a module that
    behaves like ``pynvml``; tests inject a fake through it).

    Example:
        >>> GpuInstrumentor().instrument(gpu_all_devices=True)  # doctest: +SKIP
    """

    _instruments_any = _instruments_any
    option_table = OPTIONS
    _sampler: Sampler | None = None
    _nvml: ModuleType | None = None
    _xid: XidWatcher | None = None
    _binding: Binding[GpuState] | None = None
    _generation: object | None = None
    _state_lock = threading.Lock()  # one instrumentor per class (BaseInstrumentor is a singleton)
    _starting: object | None = None  # the generation whose start still runs on the NVML thread

    @property
    def sampler(self) -> Sampler | None:
        """The current sampler (None when uninstrumented or without a GPU)."""
        return self._sampler

    @property
    def starting(self) -> bool:
        """Whether NVML has not answered the start yet (a slow or wedged ``nvmlInit``): GPUs may still come."""
        starting = self._starting
        return starting is not None and starting is self._generation

    def _setup(self, options: dict[str, Any], meter: Meter, tracer: Tracer, kwargs: dict[str, Any]) -> bool:
        opts = GpuOptions(**options)
        provider = kwargs.get("meter_provider") or metrics.get_meter_provider()
        with self._state_lock:
            generation = self._generation = self._starting = object()
        start = partial(self._start, generation, opts, kwargs.get("nvml"), provider, meter)
        try:
            # nvmlInit and the listing run on the NVML thread: a wedged driver cannot hold instrument().
            return driver.call("nvmlInit and listing the GPUs", start, START_WAIT, log=False)
        except Stuck:
            _LOG.warning(
                "otel_ml: NVML has not answered within %g s (nvmlInit or listing the GPUs); the program goes on "
                "and GPU metrics start when NVML answers",
                START_WAIT,
            )
            return True  # _start binds the GPU state when NVML answers, unless uninstrumented by then

    def _start(
        self, generation: object, opts: GpuOptions, given: ModuleType | None, provider: Any, meter: Meter
    ) -> bool:
        """Load NVML, list the devices, probe them and bind the instruments (on the NVML thread)."""
        try:
            return self._start_nvml(generation, opts, given, provider, meter)
        finally:
            with self._state_lock:
                if self._starting is generation:
                    self._starting = None

    def _start_nvml(
        self, generation: object, opts: GpuOptions, given: ModuleType | None, provider: Any, meter: Meter
    ) -> bool:
        nvml = _nvml.load(given)
        if nvml is None:
            return False
        try:
            devices = discover(
                nvml,
                all_devices=opts.gpu_all_devices,
                visible=os.environ.get("CUDA_VISIBLE_DEVICES"),
                identity_on_series=opts.gpu_identity_on_series,
            )
        except nvml.NVMLError as exc:
            _LOG.warning("otel_ml: GPU metrics off: listing the GPUs failed: %s (%s)", exc, type(exc).__name__)
            _nvml.shutdown(nvml)
            return False
        if not devices:
            _LOG.info(
                "otel_ml: GPU metrics off: no GPU visible to this process (CUDA_VISIBLE_DEVICES=%r; "
                "gpu_all_devices=True reports every GPU on the host)",
                os.environ.get("CUDA_VISIBLE_DEVICES"),
            )
            _nvml.shutdown(nvml)
            return False
        sampler = Sampler(nvml, devices)
        xid = _start_xid(nvml, sampler)
        state = GpuState(nvml, sampler, xid, all_processes=opts.gpu_all_processes)
        with self._state_lock:
            current = self._generation is generation
            if current:
                self._nvml, self._sampler, self._xid = nvml, sampler, xid
                self._binding = binding(provider, meter)
                self._binding.bind(state)
        if not current:  # uninstrumented while NVML was starting
            _close(nvml, sampler, xid)
            return False
        _LOG.info("otel_ml: GPU metrics for %s", ", ".join(f"{d.name} ({d.uuid})" for d in sampler.devices))
        return True

    def _teardown(self) -> None:
        # Also at interpreter exit, when still instrumented (_at_exit): the XID thread is waited for
        # at most 0.8 s and nvmlShutdown at most CLOSE_WAIT, and neither at all while NVML is stuck.
        self._stop()

    def _at_exit(self) -> None:
        self._stop()

    def _stop(self) -> None:
        with self._state_lock:
            self._generation = None
            binding_, nvml, sampler, xid = self._binding, self._nvml, self._sampler, self._xid
            self._binding = self._nvml = self._sampler = self._xid = None
        if binding_ is not None:
            binding_.unbind()
        if sampler is not None:
            sampler.close()
        if xid is not None:
            xid.stop(join=not driver.stuck)
        if nvml is not None:
            try:
                driver.call("freeing GPU samples and nvmlShutdown", partial(_close, nvml, sampler, None), CLOSE_WAIT)
            except Stuck:
                pass  # left to the process's end: nothing waits for a wedged driver


def _close(nvml: ModuleType, sampler: Sampler | None, xid: XidWatcher | None) -> None:
    """Stop what a start built and shut NVML down (NVML calls: on the NVML thread)."""
    if xid is not None:
        xid.stop(join=False)
    if sampler is not None:
        sampler.close()
        sampler.free()
    _nvml.shutdown(nvml)


def _start_xid(nvml: ModuleType, sampler: Sampler) -> XidWatcher | None:
    """The XID watcher thread, or None when no GPU supports XID events (or it cannot start)."""
    watcher = XidWatcher(nvml, sampler.devices)
    try:
        return watcher if watcher.start() else None
    except Exception as exc:  # noqa: BLE001 - XID counts are optional; instrumenting goes on without them
        _LOG.warning("otel_ml: GPU XID errors are not watched: %s (%s)", exc, type(exc).__name__)
        return None
