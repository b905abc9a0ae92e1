"""Set up the OpenTelemetry SDK when the user has not: providers, readers, resource.

Used both by the ``opentelemetry-instrument`` configurator and by
``otel_ml.instrument()``, so the two entry points export identically.

- Providers the user already configured are used as they are, never replaced.
- ``OTEL_METRICS_EXPORTER`` defaults to ``otel_ml_prometheus``, the embedded
  ``/metrics`` endpoint on 127.0.0.1:9464; ``otlp``, ``console`` or any other
  installed exporter name selects those instead.
- ``OTEL_METRICS_EXPORTER=prometheus``, the standard name users type, selects
  the same hardened endpoint: upstream's server (one thread per connection, no
  exemplars, no ``/slow-steps``) is what this endpoint was built to replace.
  A program that builds its own ``PrometheusMetricReader`` keeps it.
- ``OTEL_TRACES_EXPORTER`` defaults to ``otlp`` when an OTLP endpoint is
  configured and to ``none`` otherwise: a training job without a trace backend
  should not log connection errors for every span batch.
- With no trace exporter, spans are sampled only when otel_ml made them because
  something was slow (:mod:`otel_ml.distro._sampling`): nothing else would keep them.
- The instruments whose series otel_ml bounds above the SDK's default limit
  of 2,000 (the serving quality counters: 32 models of 1,000 classes; Paddle's
  run duration) get the limit of that bound (:mod:`otel_ml.distro._views`), so no class of an
  ImageNet model folds into ``otel.metric.overflow``.
- ``OTEL_SEMCONV_STABILITY_OPT_IN`` defaults to ``http``: the stable HTTP
  conventions. The old ones label server metrics with the request's ``Host``
  header (and more), so any client can add series without limit; the stable
  ones keep method, route, status, scheme and protocol version only.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable
from importlib.metadata import entry_points
from typing import Literal

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExporter, MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator

from otel_ml._core import cardinality, reported_logdirs
from otel_ml._core import semconv as sc
from otel_ml._core.options import env_value, parse_choice
from otel_ml.distro import _sdk_env
from otel_ml.distro._exit import delivery, shut_down_at_exit
from otel_ml.distro._log_limit import limit_export_logs
from otel_ml.distro._private_random import PrivateRandomIdGenerator, private_retry_jitter, seed_safe_views
from otel_ml.distro._resource import build_resource
from otel_ml.distro._sampling import sampler_for
from otel_ml.distro._sdk_internals import FORGET_SERIES, give_up, series_forgetting
from otel_ml.distro._views import bounded_limits

_LOG = logging.getLogger(__name__)
_lock = threading.Lock()

DEFAULT_METRICS_EXPORTER = "otel_ml_prometheus"
_STANDARD_PROMETHEUS = "prometheus"  # OTEL_METRICS_EXPORTER's standard name, served by DEFAULT_METRICS_EXPORTER
_MAX_NAMES_TEXT = 1_000
_Signal = Literal["traces", "metrics"]


def is_sdk_meter_provider(provider: object) -> bool:
    """True for a real (SDK or third-party) provider, False for the API's proxy/no-op ones.

    The API package defines no real provider, only its no-op and the proxy
    that stands in until one is set (a private class): any provider class
    from ``opentelemetry.metrics`` itself is one of those.
    """
    if isinstance(provider, metrics.NoOpMeterProvider):
        return False
    module = type(provider).__module__
    return not (module == "opentelemetry.metrics" or module.startswith("opentelemetry.metrics."))


def is_sdk_tracer_provider(provider: object) -> bool:
    """True for a real tracer provider, False for the API's proxy/no-op ones."""
    return not isinstance(provider, (trace.NoOpTracerProvider, trace.ProxyTracerProvider))


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
    names = [n.strip() for n in raw[:_MAX_NAMES_TEXT].split(",") if n.strip() and n.strip() != "none"]
    if signal == "metrics":
        names = [DEFAULT_METRICS_EXPORTER if n == _STANDARD_PROMETHEUS else n for n in names]
    names = list(dict.fromkeys(names))
    accepted = {ep.name for ep in entry_points(group=f"opentelemetry_{signal}_exporter")} | {"otlp"}
    unknown = [n for n in names if n not in accepted]
    if unknown or len(raw) > _MAX_NAMES_TEXT:
        _LOG.error(
            "%s names %s, which %s; accepted: %s. %s skipped.",
            var,
            ", ".join(repr(n[:80]) for n in unknown[:8]) + (", ..." if len(unknown) > 8 else ""),
            f"is not an installed {signal} exporter" if len(unknown) == 1 else f"are not installed {signal} exporters",
            ", ".join(sorted(accepted | {"none"})),
            "It is" if len(unknown) == 1 else "They are",
        )
    return [n for n in names if n in accepted]


def _load(name: str, signal: _Signal) -> type | None:
    group = f"opentelemetry_{signal}_exporter"
    ep_name = _sdk_env.otlp_entry_point(signal) if name == "otlp" else name
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
    return found[0].load()  # type: ignore[no-any-return]


def _build(name: str, signal: _Signal, make: Callable[[type], object]) -> object | None:
    """``make(exporter class)``, or None with one ERROR line: a broken exporter must not stop the program."""
    try:
        cls = _load(name, signal)
        built = None if cls is None else make(cls)
        private_retry_jitter()
        return built
    except Exception as exc:  # third-party exporters read their own settings
        from otel_ml.distro.endpoint._server import EndpointUnavailable

        if isinstance(exc, EndpointUnavailable):
            raise  # a command whose only job is to serve stops with its one line (endpoint.serving_only)
        _LOG.error(
            "otel_ml: cannot create the %r %s exporter (%s: %s); it is skipped", name, signal, type(exc).__name__, exc
        )
        return None


def _metric_reader(cls: type) -> MetricReader | None:
    if issubclass(cls, MetricReader):
        from otel_ml.distro.multiprocess import reader_for  # a pre-fork server's worker publishes instead

        return reader_for(cls) or cls()
    if issubclass(cls, MetricExporter):
        exporter = delivery.track(cls(**_sdk_env.otlp_exporter(cls, "metrics")), "metrics")
        from otel_ml.distro.multiprocess import exporter_for  # a pre-fork worker exports as its slot

        exporter = exporter_for(exporter)
        return PeriodicExportingMetricReader(exporter, **_sdk_env.periodic_reader())
    return None


def metric_readers() -> list[MetricReader]:
    """Readers for ``OTEL_METRICS_EXPORTER`` (push exporters get a periodic reader)."""
    readers = [_build(name, "metrics", _metric_reader) for name in _exporter_names("metrics")]
    return [reader for reader in readers if isinstance(reader, MetricReader)]


def _span_processor(cls: type) -> SpanProcessor | None:
    if not issubclass(cls, SpanExporter):
        return None
    exporter = delivery.track(cls(**_sdk_env.otlp_exporter(cls, "traces")), "traces")
    return BatchSpanProcessor(exporter, **_sdk_env.batch_span_processor())


def _delivers(reader: MetricReader) -> bool:
    """False for the embedded endpoint's reader whose server could not start (its port taken): nothing reads it."""
    server = getattr(reader, "server", None)
    return server is None or bool(getattr(server, "running", True))


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
    """Batch processors for ``OTEL_TRACES_EXPORTER``, plus the slow-step buffer (always last)."""
    built = [_build(name, "traces", _span_processor) for name in _exporter_names("traces")]
    processors = [processor for processor in built if isinstance(processor, SpanProcessor)]
    from otel_ml.distro.endpoint._slow_steps import default_slow_step_buffer

    return [*processors, default_slow_step_buffer()]


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
        _sdk_env.forget()
        _sdk_env.default_http_semconv()
        resource: Resource | None = None
        if meter_provider is None:
            meter_provider = metrics.get_meter_provider()
            if not is_sdk_meter_provider(meter_provider):
                resource = build_resource()
                readers = metric_readers()
                reported_logdirs.set_metrics_delivered(any(_delivers(reader) for reader in readers))
                meter_provider = MeterProvider(
                    resource=resource,
                    metric_readers=readers,
                    views=seed_safe_views(bounded_limits()),
                    shutdown_on_exit=False,
                    **_sdk_env.meter_provider(),
                )
                shut_down_at_exit(meter_provider)
                metrics.set_meter_provider(meter_provider)
                _built[:] = [meter_provider]
        # A sweep's finished trials can be withdrawn only from a provider otel_ml built (docs/keras.md, 'Sweeps').
        cardinality.set_releaser(series_releaser(meter_provider) if any(p is meter_provider for p in _built) else None)
        if tracer_provider is None:
            tracer_provider = trace.get_tracer_provider()
            if not is_sdk_tracer_provider(tracer_provider):
                processors = span_processors()
                provider = TracerProvider(
                    resource=resource or build_resource(),
                    id_generator=_id_generator(),
                    span_limits=_sdk_env.span_limits(),
                    sampler=sampler_for(processors),
                    shutdown_on_exit=False,
                )
                _add_processors(provider, [delivery, *processors])
                shut_down_at_exit(provider)
                trace.set_tracer_provider(provider)
                tracer_provider = provider
        return meter_provider, tracer_provider


_built: list[object] = []  # the meter provider otel_ml built last


def series_releaser(provider: object) -> Callable[[str, str], bool]:
    """``release(model, run)``: withdraw from ``provider`` every series of that (model, run) label pair.

    Registered with :func:`otel_ml._core.cardinality.set_releaser`, so that past
    OTEL_ML_MAX_RUNS pairs a finished trial's series leave /metrics and the
    newest trial is reported under its own names. False (the bound then
    overflows) where the SDK's internals are not as probed.
    """

    def release(model: str, run: str) -> bool:
        forget = series_forgetting()
        if forget is None:
            return False
        try:
            forget(provider, {sc.ML_MODEL_NAME: model, sc.ML_RUN_NAME: run})
        except Exception as exc:  # noqa: BLE001 - an SDK whose storage is shaped otherwise than probed
            give_up(FORGET_SERIES, exc)
            return False
        return True

    return release


def _id_generator() -> IdGenerator:
    """``OTEL_PYTHON_ID_GENERATOR`` if set and valid, else ids immune to ``random.seed`` (see ``_private_random``)."""
    names = sorted({ep.name for ep in entry_points(group="opentelemetry_id_generator")})
    name = (
        env_value("OTEL_PYTHON_ID_GENERATOR", parse_choice(*names), None, "(otel_ml's OS-seeded private ids)")
        if names
        else None
    )
    if name is None:
        return PrivateRandomIdGenerator()
    try:
        # What the SDK's own configurator does, through the public entry point.
        (found,) = entry_points(group="opentelemetry_id_generator", name=name)
        return found.load()()  # type: ignore[no-any-return]
    except Exception as exc:  # noqa: BLE001 - an installed but broken generator
        _LOG.error("OTEL_PYTHON_ID_GENERATOR=%r cannot be loaded (%s); using otel_ml's default ids", name, exc)
        return PrivateRandomIdGenerator()


def _add_processors(provider: TracerProvider, processors: Iterable[SpanProcessor]) -> None:
    for processor in processors:
        provider.add_span_processor(processor)
