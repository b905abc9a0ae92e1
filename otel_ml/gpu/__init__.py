"""GPU metrics from NVML, named by the OpenTelemetry hardware conventions (``hw.*``).

Usage::

    from otel_ml.gpu import GpuInstrumentor
    GpuInstrumentor().instrument()   # or otel_ml.instrument(), or opentelemetry-instrument

or, as a node-level exporter beside the jobs: ``otel-ml gpu --host 0.0.0.0``.

Configuration: the ``gpu_all_devices`` and ``gpu_all_processes`` options, or
``OTEL_ML_GPU_ALL_DEVICES`` / ``OTEL_ML_GPU_ALL_PROCESSES``. By default only
the devices ``CUDA_VISIBLE_DEVICES`` lets this process use are reported, and
per-process memory only for this process.

Without a GPU (``nvmlInit`` fails with ``LibraryNotFound``) one INFO line is
logged and nothing is registered. ``pynvml`` (from ``nvidia-ml-py``) is
imported when instrumenting, never at ``import otel_ml``.
"""

from __future__ import annotations

import atexit
import logging
import os
from types import ModuleType
from typing import Any, ClassVar

from opentelemetry import metrics

from otel_ml._base import OtelMLInstrumentor
from otel_ml._config import parse_bool, resolve
from otel_ml.environment_variables import OTEL_ML_GPU_ALL_DEVICES, OTEL_ML_GPU_ALL_PROCESSES
from otel_ml.gpu import _nvml
from otel_ml.gpu._devices import discover
from otel_ml.gpu._instruments import GpuObserver, observer_for
from otel_ml.gpu._sampler import Sampler
from otel_ml.gpu.package import _instruments_any
from otel_ml.version import __version__

__all__ = ["GpuInstrumentor"]

_LOG = logging.getLogger("otel_ml.gpu")


class GpuInstrumentor(OtelMLInstrumentor):
    """Observable GPU gauges and counters read from NVML once per collection.

    Keyword arguments of ``instrument()``: ``meter_provider``,
    ``gpu_all_devices``, ``gpu_all_processes``, and ``nvml`` (a module that
    behaves like ``pynvml``; tests inject a fake through it).

    Example:
        >>> GpuInstrumentor().instrument(gpu_all_devices=True)  # doctest: +SKIP
    """

    _instruments_any = _instruments_any
    options: ClassVar[frozenset[str]] = frozenset({"gpu_all_devices", "gpu_all_processes"})

    def __init__(self) -> None:
        # A per-class singleton whose __init__ runs on every call: set state once.
        if not hasattr(self, "_sampler"):
            self._sampler: Sampler | None = None
            self._nvml: ModuleType | None = None
            self._observer: GpuObserver | None = None
            self._atexit = False

    @property
    def sampler(self) -> Sampler | None:
        """The current sampler (None when uninstrumented or without a GPU)."""
        return self._sampler

    def _instrument(self, **kwargs: Any) -> None:
        all_devices = resolve(kwargs.get("gpu_all_devices"), OTEL_ML_GPU_ALL_DEVICES, parse_bool, False,
                              option="gpu_all_devices")
        all_processes = resolve(kwargs.get("gpu_all_processes"), OTEL_ML_GPU_ALL_PROCESSES, parse_bool, False,
                                option="gpu_all_processes")
        nvml = _nvml.load(kwargs.get("nvml"))
        if nvml is None:
            return
        try:
            devices = discover(nvml, all_devices=all_devices, visible=os.environ.get("CUDA_VISIBLE_DEVICES"))
        except nvml.NVMLError as exc:
            _LOG.warning("otel_ml: GPU metrics off: listing the GPUs failed: %s (%s)", exc, type(exc).__name__)
            _nvml.shutdown(nvml)
            return
        if not devices:
            _LOG.info("otel_ml: GPU metrics off: no GPU visible to this process (CUDA_VISIBLE_DEVICES=%r; "
                      "gpu_all_devices=True reports every GPU on the host)", os.environ.get("CUDA_VISIBLE_DEVICES"))
            _nvml.shutdown(nvml)
            return
        provider = kwargs.get("meter_provider") or metrics.get_meter_provider()
        meter = metrics.get_meter(__name__, __version__, provider)
        self._nvml = nvml
        self._sampler = Sampler(nvml, devices)
        self._observer = observer_for(provider, meter)
        self._observer.bind(self._sampler, all_processes=all_processes)
        _LOG.info("otel_ml: GPU metrics for %s", ", ".join(f"{d.name} ({d.uuid})" for d in self._sampler.devices))
        if not self._atexit:
            atexit.register(_at_exit)
            self._atexit = True

    def _uninstrument(self, **kwargs: Any) -> None:
        if self._observer is not None:
            self._observer.unbind()
            self._observer = None
        if self._sampler is not None:
            self._sampler.close()
            self._sampler = None
        if self._nvml is not None:
            _nvml.shutdown(self._nvml)
            self._nvml = None


def _at_exit() -> None:
    """``nvmlShutdown`` at interpreter exit, when still instrumented."""
    GpuInstrumentor()._uninstrument()
