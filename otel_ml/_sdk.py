"""Set up the OpenTelemetry SDK when the user has not: providers, readers, resource.

Used both by the ``opentelemetry-instrument`` configurator and by
``otel_ml.instrument()``, so the two entry points export identically.

- Providers the user already configured are used as they are, never replaced.
- ``OTEL_METRICS_EXPORTER`` defaults to ``otel_ml_prometheus``, the embedded
  ``/metrics`` endpoint on 127.0.0.1:9464; ``otlp``, ``console`` or any other
  installed exporter name selects those instead.
- ``OTEL_TRACES_EXPORTER`` defaults to ``otlp`` when an OTLP endpoint is
  configured and to ``none`` otherwise: a training job without a trace backend
  should not log connection errors for every span batch.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterable
from typing import Literal

from opentelemetry import metrics, trace
from opentelemetry.sdk._configuration import _get_exporter_entry_point, _import_id_generator
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExporter, MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.util._importlib_metadata import entry_points

from otel_ml import _semconv as sc
from otel_ml._ids import SystemRandomIdGenerator
from otel_ml._log_limit import limit_export_logs

_LOG = logging.getLogger(__name__)
_lock = threading.Lock()

DEFAULT_METRICS_EXPORTER = "otel_ml_prometheus"
_Signal = Literal["traces", "metrics"]


def is_sdk_meter_provider(provider: object) -> bool:
    """True for a real (SDK or third-party) provider, False for the API's proxy/no-op ones."""
    return not isinstance(provider, (metrics.NoOpMeterProvider, metrics._internal._ProxyMeterProvider))


def is_sdk_tracer_provider(provider: object) -> bool:
    """True for a real tracer provider, False for the API's proxy/no-op ones."""
    return not isinstance(provider, (trace.NoOpTracerProvider, trace.ProxyTracerProvider))


def worker_resource_attributes(environ: dict[str, str] | None = None) -> dict[str, str | int]:
    """Worker type and index from ``TF_CONFIG``, so each worker's series stay distinct."""
    raw = (environ if environ is not None else os.environ).get("TF_CONFIG")
    if not raw:
        return {}
    try:
        task = json.loads(raw).get("task") or {}
        attrs: dict[str, str | int] = {}
        if task.get("type") is not None:
            attrs[sc.ML_WORKER_TYPE] = str(task["type"])
        if task.get("index") is not None:
            attrs[sc.ML_WORKER_INDEX] = int(task["index"])
        return attrs
    except (ValueError, TypeError, AttributeError) as exc:
        _LOG.error(
            'TF_CONFIG is not valid JSON of the form {"task": {"type": ..., "index": ...}} (%s); '
            "worker identity is not added to the resource",
            exc,
        )
        return {}


def build_resource() -> Resource:
    """The SDK resource (``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``) plus worker identity."""
    return Resource.create(worker_resource_attributes())


def _exporter_names(signal: _Signal) -> list[str]:
    var = "OTEL_METRICS_EXPORTER" if signal == "metrics" else "OTEL_TRACES_EXPORTER"
    raw = os.environ.get(var)
    if raw is None or not raw.strip():
        if signal == "metrics":
            raw = DEFAULT_METRICS_EXPORTER
        elif os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
            raw = "otlp"
        else:
            raw = "none"
    names = [n.strip() for n in raw.split(",") if n.strip()]
    return [] if names == ["none"] else [n for n in names if n != "none"]


def _load(name: str, signal: _Signal) -> type | None:
    group = f"opentelemetry_{signal}_exporter"
    ep_name = _get_exporter_entry_point(name, signal) if name == "otlp" else name
    found = list(entry_points(group=group, name=ep_name))
    if not found:
        accepted = sorted({ep.name for ep in entry_points(group=group)} | {"none"})
        _LOG.error(
            "OTEL_%s_EXPORTER names %r, which is not an installed %s exporter; accepted: %s. It is skipped.",
            signal.upper(),
            name,
            signal,
            ", ".join(accepted),
        )
        return None
    return found[0].load()


def metric_readers() -> list[MetricReader]:
    """Readers for ``OTEL_METRICS_EXPORTER`` (push exporters get a periodic reader)."""
    readers: list[MetricReader] = []
    for name in _exporter_names("metrics"):
        cls = _load(name, "metrics")
        if cls is None:
            continue
        if issubclass(cls, MetricReader):
            readers.append(cls())
        elif issubclass(cls, MetricExporter):
            # The periodic reader reads OTEL_METRIC_EXPORT_INTERVAL itself.
            readers.append(PeriodicExportingMetricReader(cls()))
    return readers


def pushes_metrics() -> bool:
    """True when ``OTEL_METRICS_EXPORTER`` names a push exporter (``otlp``, ``console``).

    A pull endpoint (the embedded ``/metrics``) dies with the process: a
    program that exports and exits at once (``otel-ml tensorboard --once``)
    delivers nothing through it.
    """
    for name in _exporter_names("metrics"):
        cls = _load(name, "metrics")
        if cls is not None and issubclass(cls, MetricExporter):
            return True
    return False


def span_processors() -> list[SpanProcessor]:
    """Batch processors for ``OTEL_TRACES_EXPORTER``, plus the slow-step buffer."""
    processors: list[SpanProcessor] = []
    for name in _exporter_names("traces"):
        cls = _load(name, "traces")
        if cls is not None and issubclass(cls, SpanExporter):
            processors.append(BatchSpanProcessor(cls()))
    from otel_ml.exporter._slow_steps import default_slow_step_buffer

    processors.append(default_slow_step_buffer())
    return processors


def ensure_providers(
    meter_provider: metrics.MeterProvider | None = None,
    tracer_provider: trace.TracerProvider | None = None,
) -> tuple[metrics.MeterProvider, trace.TracerProvider]:
    """Return the providers to instrument with, creating global SDK ones if none exist.

    Explicit arguments are returned as they are. Otherwise the global providers
    are used when the user (or another configurator) set them; only when they
    are still the API's proxies does otel_ml build and install its own.
    """
    with _lock:
        limit_export_logs()
        resource: Resource | None = None
        if meter_provider is None:
            meter_provider = metrics.get_meter_provider()
            if not is_sdk_meter_provider(meter_provider):
                resource = build_resource()
                meter_provider = MeterProvider(resource=resource, metric_readers=metric_readers())
                metrics.set_meter_provider(meter_provider)
        if tracer_provider is None:
            tracer_provider = trace.get_tracer_provider()
            if not is_sdk_tracer_provider(tracer_provider):
                provider = TracerProvider(resource=resource or build_resource(), id_generator=_id_generator())
                _add_processors(provider, span_processors())
                trace.set_tracer_provider(provider)
                tracer_provider = provider
        return meter_provider, tracer_provider


def _id_generator() -> IdGenerator:
    """``OTEL_PYTHON_ID_GENERATOR`` if set, else ids immune to ``random.seed`` (see :mod:`otel_ml._ids`)."""
    if os.environ.get("OTEL_PYTHON_ID_GENERATOR"):
        return _import_id_generator(os.environ["OTEL_PYTHON_ID_GENERATOR"])
    return SystemRandomIdGenerator()


def _add_processors(provider: TracerProvider, processors: Iterable[SpanProcessor]) -> None:
    for processor in processors:
        provider.add_span_processor(processor)
