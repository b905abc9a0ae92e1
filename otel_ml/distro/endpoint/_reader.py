"""``OtelMLPrometheusMetricReader``: a Prometheus pull reader with exemplars and ``/slow-steps``.

A plain SDK ``MetricReader`` (public API) feeding :class:`ExemplarCollector`:
upstream's ``PrometheusMetricReader`` changed its constructor across the
releases otel_ml supports and keeps its collector in a private attribute.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
from typing import Any

from opentelemetry.sdk.metrics import (
    Counter,
    Histogram,
    ObservableCounter,
    ObservableGauge,
    ObservableUpDownCounter,
    UpDownCounter,
)
from opentelemetry.sdk.metrics.export import AggregationTemporality, MetricReader, MetricsData
from prometheus_client import CollectorRegistry

from otel_ml import environment_variables as ev
from otel_ml._core import semconv as sc
from otel_ml._core.options import Option, Parser, parse_int, parse_str
from otel_ml.distro.endpoint._app import make_app
from otel_ml.distro.endpoint._exemplars import ExemplarCollector
from otel_ml.distro.endpoint._history import PAGE_INTERVAL, PAGE_POINTS, HistorySampler, MetricHistory
from otel_ml.distro.endpoint._server import EmbeddedServer
from otel_ml.distro.endpoint._slow_steps import SlowStepBuffer, default_slow_step_buffer

_LOG = logging.getLogger(__name__)

# The standard variables of opentelemetry-exporter-prometheus, read through the
# same resolver as ours: a bad value is one ERROR line and the default.
HOST = Option("host", "OTEL_EXPORTER_PROMETHEUS_HOST", parse_str, "127.0.0.1")
PORT = Option("port", "OTEL_EXPORTER_PROMETHEUS_PORT", parse_int(0, 65_535), 9464)


def _host_names(value: object) -> tuple[str, ...]:
    given = value if isinstance(value, (tuple, list)) else str(value).split(",")
    names = tuple(str(name).strip() for name in given if str(name).strip())
    if not names or any(len(name) > 253 or any(c.isspace() or c in "/@?#" for c in name) for name in names):
        raise ValueError(value)
    return names


ALLOWED_HOSTS: Option[tuple[str, ...] | None] = Option(
    "allowed_hosts",
    ev.OTEL_ML_ENDPOINT_ALLOWED_HOSTS,
    Parser("comma-separated host names (no spaces, /, @, ? or #), or *", _host_names),
    None,
)

# Resource attributes that identify a worker become labels, as the bundled
# collector config does, so both paths give the same label names.
WORKER_RESOURCE_ATTRIBUTES = frozenset({"service.name", "service.instance.id", sc.ML_WORKER_TYPE, sc.ML_WORKER_INDEX})


class OtelMLPrometheusMetricReader(MetricReader):
    """Serves ``/metrics`` (with exemplars in OpenMetrics) and ``/slow-steps`` on 127.0.0.1:9464.

    Selected by ``OTEL_METRICS_EXPORTER=otel_ml_prometheus``, which is also the
    default of ``otel_ml.instrument()`` and ``opentelemetry-instrument`` with otel_ml;
    when otel_ml sets up the SDK, the standard name ``prometheus`` selects it too.

    Args:
        host: Interface to bind: an IPv4 or IPv6 address (``[::1]`` too) or a host name; default
            ``OTEL_EXPORTER_PROMETHEUS_HOST`` or ``127.0.0.1``.
        port: Port; default ``OTEL_EXPORTER_PROMETHEUS_PORT`` or ``9464``; ``0`` picks a free one.
        slow_steps: The slow-step buffer to serve; default the process-wide one.
        start_server: False to only build the registry (for tests and benchmarks).
        allowed_hosts: ``Host`` names answered besides the bound address, loopback names and IP
            literals; default ``OTEL_ML_ENDPOINT_ALLOWED_HOSTS``; ``("*",)`` answers any.

    Example:
        >>> from opentelemetry.sdk.metrics import MeterProvider
        >>> reader = OtelMLPrometheusMetricReader(port=0)  # doctest: +SKIP
        >>> MeterProvider(metric_readers=[reader])  # doctest: +SKIP
    """

    def __init__(
        self,
        host: str | None = None,
        port: int | None = None,
        *,
        slow_steps: SlowStepBuffer | None = None,
        start_server: bool = True,
        allowed_hosts: tuple[str, ...] | None = None,
    ) -> None:
        host = HOST.resolve(host)
        port = PORT.resolve(port)
        # Cumulative for every instrument, as Prometheus expects (and as upstream's reader asks).
        cumulative = AggregationTemporality.CUMULATIVE
        kinds = (Counter, UpDownCounter, Histogram, ObservableCounter, ObservableUpDownCounter, ObservableGauge)
        super().__init__(preferred_temporality=dict.fromkeys(kinds, cumulative))
        self.registry = CollectorRegistry(auto_describe=False)
        self._collector = ExemplarCollector(resource_attribute_filter=WORKER_RESOURCE_ATTRIBUTES.__contains__)
        # No deadline: a scrape that waited for the GIL (a model's run) would otherwise time out after the
        # SDK took some observable readings and before it reset them, and the next scrape would add them again.
        self._collector.callback = functools.partial(self.collect, timeout_millis=math.inf)
        self.registry.register(self._collector)
        self.slow_steps = slow_steps or default_slow_step_buffer()
        # The live page's history: sampled from this registry by one thread, only while the server serves.
        interval = PAGE_INTERVAL.resolve(None)
        self.history = MetricHistory(interval, PAGE_POINTS.resolve(None)) if interval > 0 else None
        self._sampler: HistorySampler | None = None
        allowed = ALLOWED_HOSTS.resolve(allowed_hosts) or ()
        self.server = EmbeddedServer(host, port, make_app(self.registry, self.slow_steps, self.history), allowed)
        if start_server and self.server.start():
            _live.append(self)
            if self.history is not None:
                self._sampler = HistorySampler(self.registry.collect, self.history).start()
            base = self.url[: -len("/metrics")]
            _LOG.info(
                "otel_ml: %smetrics on %s, slow steps on %s/slow-steps",
                f"live page on {base}/, " if self.history is not None else "",
                self.url,
                base,
            )

    @property
    def url(self) -> str:
        """The ``/metrics`` URL actually served."""
        return self.server.url

    def _receive_metrics(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> None:
        # The one method the SDK asks of a MetricReader subclass (its documented extension point).
        if metrics_data is not None:
            self._collector.add_metrics_data(metrics_data)

    @property
    def page_url(self) -> str | None:
        """The live page's URL, or None when it is off (``OTEL_ML_PAGE_INTERVAL=0``)."""
        return self.url[: -len("metrics")] if self.history is not None else None

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        if self._sampler is not None:
            self._sampler.stop()
        self.server.stop()
        if self in _live:
            _live.remove(self)
        with contextlib.suppress(KeyError):  # shut down twice (the program, then its provider)
            self.registry.unregister(self._collector)


_live: list[OtelMLPrometheusMetricReader] = []


def embedded_url() -> str | None:
    """The ``/metrics`` URL of this process's embedded endpoint, or None when none is serving."""
    for reader in reversed(_live):
        if reader.server.running:
            return reader.url
    return None
