"""``otel_ml.instrument()`` and ``otel_ml.uninstrument()``: compose the instrumentors.

The per-framework instrumentors do the work; this module only resolves the
providers once, validates options, honours
``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS`` and skips frameworks that are not
installed (quietly: a training job without paddle is normal).
"""

from __future__ import annotations

import importlib
import logging
import os
from typing import Any

from opentelemetry import metrics, trace

from otel_ml._base import OtelMLInstrumentor
from otel_ml._sdk import ensure_providers

_LOG = logging.getLogger(__name__)

# name (as in the entry point and OTEL_PYTHON_DISABLED_INSTRUMENTATIONS) -> "module:Class"
INSTRUMENTORS: dict[str, str] = {
    "keras": "otel_ml.keras:KerasInstrumentor",
}


def _instrumentor(name: str) -> OtelMLInstrumentor:
    module_name, _, cls_name = INSTRUMENTORS[name].partition(":")
    cls: type[OtelMLInstrumentor] = getattr(importlib.import_module(module_name), cls_name)
    return cls()


def _disabled() -> set[str]:
    raw = os.environ.get("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "")
    return {part.strip() for part in raw.split(",") if part.strip()}


def instrument(
    meter_provider: metrics.MeterProvider | None = None,
    tracer_provider: trace.TracerProvider | None = None,
    **options: Any,
) -> None:
    """Instrument every supported framework that is installed; safe to call twice.

    Call it before or after importing the framework: modules not imported yet
    are patched when the program imports them. With no providers given and
    none configured globally, metrics are served on
    ``http://127.0.0.1:9464/metrics`` (or as ``OTEL_METRICS_EXPORTER`` says).

    Args:
        meter_provider: Meter provider to use; default: the global one, created if unset.
        tracer_provider: Tracer provider to use; default: the global one, created if unset.
        **options: Instrumentor options, e.g. ``run_name="exp1"`` or
            ``slow_step_seconds=0.5``; each beats its ``OTEL_ML_*`` variable.

    Raises:
        TypeError: an option no instrumentor accepts.
        ValueError: an option with an invalid value.

    Example:
        >>> import otel_ml
        >>> otel_ml.instrument(run_name="baseline")  # doctest: +SKIP
    """
    known: set[str] = set()
    instrumentors = {name: _instrumentor(name) for name in INSTRUMENTORS}
    for inst in instrumentors.values():
        known |= inst.options
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"otel_ml.instrument() got unknown option(s) {unknown}; accepted: {sorted(known)}")
    disabled = _disabled()
    pending = {
        name: inst
        for name, inst in instrumentors.items()
        if name not in disabled and not inst.is_instrumented_by_opentelemetry
    }
    if not pending:
        return
    meter_provider, tracer_provider = ensure_providers(meter_provider, tracer_provider)
    for name, inst in pending.items():
        conflict = inst._check_dependency_conflicts()
        if conflict is not None:
            _LOG.debug("otel_ml: not instrumenting %s: %s", name, conflict)
            continue
        own = {key: value for key, value in options.items() if key in inst.options}
        inst.instrument(meter_provider=meter_provider, tracer_provider=tracer_provider, skip_dep_check=True, **own)


def uninstrument() -> None:
    """Undo :func:`instrument`: every patched method is restored exactly; safe to call twice."""
    for name in INSTRUMENTORS:
        inst = _instrumentor(name)
        if inst.is_instrumented_by_opentelemetry:
            inst.uninstrument()
