"""Process health: CPU, memory, threads, file descriptors, context switches and GC of the process.

Usage::

    from otel_ml.process import ProcessInstrumentor
    ProcessInstrumentor().instrument()     # also applied by otel_ml.instrument()

An inference service's latency often moves with its process (a leak, a GC
storm, a thread pool that grew), so these sit beside the ``ml.*`` series on the
same endpoint or collector. The work is done by the maintained
``opentelemetry-instrumentation-system-metrics`` library, restricted to the
process metrics (:data:`PROCESS_METRICS`), with the semantic-convention names
(``process.cpu.time``, ``process.memory.usage``, ``process.thread.count``,
``cpython.gc.collections``, ...). Machine-wide ``system.*`` metrics are left
out: a node exporter or the collector's host metrics report them once per host.

Configuration: none (the library's own
``OTEL_PYTHON_SYSTEM_METRICS_EXCLUDED_METRICS`` applies). Under
``opentelemetry-instrument`` the library's own ``system_metrics`` entry point
loads too, with its full default set, and the process series come from there;
``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=system_metrics`` keeps only these.

API: :class:`ProcessInstrumentor`; ``uninstrument()`` stops the series.

Only the library's public API is used: otel_ml makes an instance of its own
of ``SystemMetricsInstrumentor`` (outside the class's singleton, so that a
program's own instance, configuration and flag are never touched), whose
``instrument(meter_provider=...)`` creates observable instruments that cannot
be removed (its ``uninstrument()`` does nothing). So it is given a meter
provider of ours that keeps only the process instruments and reads each
through a :class:`~otel_ml._core.observe.Binding`:
they are made once per meter provider, report while instrumented and nothing
after ``uninstrument()``, and instrumenting again does not duplicate them.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from importlib.metadata import entry_points
from typing import Any, Final

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Meter, NoOpMeter, Observation
from opentelemetry.trace import Tracer

from otel_ml._core.instrumentor import OtelMLInstrumentor
from otel_ml._core.observe import Binding, binding_for
from otel_ml.process.package import _instruments_any

_LOG = logging.getLogger(__name__)

__all__ = ["PROCESS_METRICS", "ProcessInstrumentor"]

PROCESS_METRICS: Final[dict[str, list[str] | None]] = {
    "process.cpu.time": ["user", "system"],
    "process.cpu.utilization": ["user", "system"],
    "process.memory.usage": None,
    "process.memory.virtual": None,
    "process.thread.count": None,
    "process.open_file_descriptor.count": None,
    "process.context_switches": ["involuntary", "voluntary"],
    "cpython.gc.collections": None,
}
"""The library's metrics kept, by configuration key and instrument name (its ``process.runtime.*`` duplicates and
``system.*`` are not), with the library's default attribute values."""

Callback = Callable[[CallbackOptions], Iterable[Observation]]


class ProcessInstrumentor(OtelMLInstrumentor):
    """Process metrics through ``opentelemetry-instrumentation-system-metrics``, made once per meter provider."""

    _instruments_any = _instruments_any
    _binding: Binding[bool] | None = None

    def _setup(self, options: dict[str, Any], meter: Meter, tracer: Tracer, kwargs: dict[str, Any]) -> None:
        if _library_entry_point_loads():
            # opentelemetry-instrument applies the library's own entry point too (before or after
            # this one): its set includes ours, and instrumenting the library here first would make that
            # entry point log "Attempting to instrument while already instrumented".
            _LOG.debug("otel_ml: process metrics come from the system_metrics instrumentation")
            return
        provider = kwargs.get("meter_provider") or metrics.get_meter_provider()
        self._binding = binding_for(provider, __name__, lambda binding: _create(provider, binding))
        self._binding.bind(True)

    def _teardown(self) -> None:
        if self._binding is not None:
            self._binding.unbind()
            self._binding = None


def _create(provider: metrics.MeterProvider, binding: Binding[bool]) -> None:
    """Have the library make its process instruments on ``provider``, read through ``binding``."""
    from opentelemetry.instrumentation.system_metrics import SystemMetricsInstrumentor

    # The library's instance is a per-class singleton whose constructor re-runs __init__: calling
    # it would reset the configuration a program gave it. ``__new__`` alone hands back that shared
    # instance untouched, to ask whether someone instrumented it for the global provider.
    shared = SystemMetricsInstrumentor.__new__(SystemMetricsInstrumentor)
    if shared.is_instrumented_by_opentelemetry and provider is metrics.get_meter_provider():
        # Someone (the program, or opentelemetry-instrument) instrumented it for the global provider.
        _LOG.debug("otel_ml: system metrics already instrumented; process metrics come from there")
        return
    # An instance of our own, outside the singleton: the program's instance, its configuration and
    # its "instrumented" flag stay exactly as the program left them.
    ours = object.__new__(SystemMetricsInstrumentor)
    config = {name: list(values) if values else None for name, values in PROCESS_METRICS.items()}
    SystemMetricsInstrumentor.__init__(ours, config=config)
    ours.instrument(meter_provider=_ProcessOnly(provider, binding))


class _ProcessOnly:
    """The meter provider the library is given: the real one, less what is not a process metric."""

    def __init__(self, provider: metrics.MeterProvider, binding: Binding[bool]) -> None:
        self._provider, self._binding = provider, binding

    def get_meter(self, *args: Any, **kwargs: Any) -> _ProcessMeter:
        return _ProcessMeter(self._provider.get_meter(*args, **kwargs), self._binding)


class _ProcessMeter:
    """Creates the library's process instruments on the real meter, each callback read through the binding.

    Any other instrument (``system.*``, ``process.runtime.*``) is a no-op one
    that nothing ever reads.
    """

    def __init__(self, meter: Meter, binding: Binding[bool]) -> None:
        self._meter, self._binding = meter, binding
        self._noop = NoOpMeter("otel_ml.process.unused")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._noop, name)

    def _create(self, kind: str, name: str, callbacks: Sequence[Callback] | None, **kwargs: Any) -> Any:
        if name not in PROCESS_METRICS:
            return getattr(self._noop, kind)(name, callbacks, **kwargs)
        gated = [self._binding.callback(_ignoring_state(callback)) for callback in callbacks or ()]
        return getattr(self._meter, kind)(name, gated, **kwargs)

    def create_observable_counter(self, name: str, callbacks: Sequence[Callback] | None = None, **kwargs: Any) -> Any:
        return self._create("create_observable_counter", name, callbacks, **kwargs)

    def create_observable_gauge(self, name: str, callbacks: Sequence[Callback] | None = None, **kwargs: Any) -> Any:
        return self._create("create_observable_gauge", name, callbacks, **kwargs)

    def create_observable_up_down_counter(
        self, name: str, callbacks: Sequence[Callback] | None = None, **kwargs: Any
    ) -> Any:
        return self._create("create_observable_up_down_counter", name, callbacks, **kwargs)


def _ignoring_state(callback: Callback) -> Callable[[bool, CallbackOptions], Iterable[Observation]]:
    return lambda _bound, options: callback(options)


def _library_entry_point_loads() -> bool:
    """Whether ``opentelemetry-instrument`` is loading the library's own ``system_metrics`` entry point."""
    if "opentelemetry.instrumentation.auto_instrumentation" not in sys.modules:
        return False
    disabled = {n.strip() for n in os.environ.get("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "").split(",")}
    if "system_metrics" in disabled:
        return False
    return any(ep.name == "system_metrics" for ep in entry_points(group="opentelemetry_instrumentor"))
