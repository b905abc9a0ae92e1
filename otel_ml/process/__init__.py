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

Configuration: none. The library's observable instruments cannot be removed
(its ``_uninstrument`` does nothing), so they are created once per meter
provider: after ``uninstrument()`` the process series go on, and instrumenting
again does not duplicate them. Under ``opentelemetry-instrument`` the
library's own ``system_metrics`` entry point loads too, with its full default
set; ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=system_metrics`` keeps only these.
"""

from __future__ import annotations

import logging
import os
import sys
import weakref
from importlib.metadata import entry_points
from typing import Any, Final

from opentelemetry import metrics
from opentelemetry.metrics import Meter
from opentelemetry.trace import Tracer

from otel_ml._core.instrumentor import OtelMLInstrumentor
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
"""The library's configuration keys kept (its ``process.runtime.*`` duplicates and ``system.*`` are not)."""

_done: weakref.WeakSet[Any] = weakref.WeakSet()
"""Meter providers that have the process instruments already (they cannot be removed or made twice)."""


class ProcessInstrumentor(OtelMLInstrumentor):
    """Process metrics through ``opentelemetry-instrumentation-system-metrics``, once per meter provider."""

    _instruments_any = _instruments_any

    def _setup(self, options: dict[str, Any], meter: Meter, tracer: Tracer, kwargs: dict[str, Any]) -> None:
        provider = kwargs.get("meter_provider") or metrics.get_meter_provider()
        if provider in _done:
            return
        from opentelemetry.instrumentation.system_metrics import SystemMetricsInstrumentor

        if _library_entry_point_loads():
            # opentelemetry-instrument applies the library's own entry point too (before or after
            # this one): its set includes ours, and instrumenting it first here would make that
            # entry point log "Attempting to instrument while already instrumented".
            _LOG.debug("otel_ml: process metrics come from the system_metrics instrumentation")
            _done.add(provider)
            return
        existing = SystemMetricsInstrumentor._instance  # the library's singleton, if any, left as it is
        if existing is not None and existing.is_instrumented_by_opentelemetry:
            if not _done and provider is metrics.get_meter_provider():
                # opentelemetry-instrument loaded the library's own entry point first: its set includes ours.
                _LOG.debug("otel_ml: system metrics already instrumented; process metrics come from there")
                _done.add(provider)
                return
            existing.uninstrument()  # a no-op in the library: what it made for another provider stays there
        # The constructor re-initialises the singleton: only now, when its instruments are ours to make.
        SystemMetricsInstrumentor(config=dict(PROCESS_METRICS)).instrument(meter_provider=provider)
        _done.add(provider)


def _library_entry_point_loads() -> bool:
    """Whether ``opentelemetry-instrument`` is loading the library's own ``system_metrics`` entry point."""
    if "opentelemetry.instrumentation.auto_instrumentation" not in sys.modules:
        return False
    disabled = {n.strip() for n in os.environ.get("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "").split(",")}
    if "system_metrics" in disabled:
        return False
    return any(ep.name == "system_metrics" for ep in entry_points(group="opentelemetry_instrumentor"))
