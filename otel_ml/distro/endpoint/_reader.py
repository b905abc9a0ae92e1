"""``OtelMLPrometheusMetricReader``: upstream's Prometheus reader, with exemplars and ``/slow-steps``."""

from __future__ import annotations

import logging

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from prometheus_client import CollectorRegistry

from otel_ml._core import semconv as sc
from otel_ml._core.options import Option, parse_int, parse_str
from otel_ml.distro.endpoint._app import make_app
from otel_ml.distro.endpoint._exemplars import ExemplarCollector
from otel_ml.distro.endpoint._server import EmbeddedServer
from otel_ml.distro.endpoint._slow_steps import SlowStepBuffer, default_slow_step_buffer

_LOG = logging.getLogger(__name__)

# The standard variables of opentelemetry-exporter-prometheus, read through the
# same resolver as ours: a bad value is one ERROR line and the default.
HOST = Option("host", "OTEL_EXPORTER_PROMETHEUS_HOST", parse_str, "127.0.0.1")
PORT = Option("port", "OTEL_EXPORTER_PROMETHEUS_PORT", parse_int(0, 65_535), 9464)

# Resource attributes that identify a worker become labels, as the bundled
# collector config does, so both paths give the same label names.
WORKER_RESOURCE_ATTRIBUTES = frozenset({"service.name", "service.instance.id", sc.ML_WORKER_TYPE, sc.ML_WORKER_INDEX})


class OtelMLPrometheusMetricReader(PrometheusMetricReader):  # type: ignore[misc]
    """Serves ``/metrics`` (with exemplars in OpenMetrics) and ``/slow-steps`` on 127.0.0.1:9464.

    Selected by ``OTEL_METRICS_EXPORTER=otel_ml_prometheus``, which is also the
    default of ``otel_ml.instrument()`` and ``opentelemetry-instrument`` with otel_ml.

    Args:
        host: Interface to bind; default ``OTEL_EXPORTER_PROMETHEUS_HOST`` or ``127.0.0.1``.
        port: Port; default ``OTEL_EXPORTER_PROMETHEUS_PORT`` or ``9464``; ``0`` picks a free one.
        slow_steps: The slow-step buffer to serve; default the process-wide one.
        start_server: False to only build the registry (for tests and benchmarks).

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
    ) -> None:
        host = HOST.resolve(host)
        port = PORT.resolve(port)
        self.registry = CollectorRegistry(auto_describe=False)
        super().__init__(
            registry=self.registry,
            resource_attribute_filter=WORKER_RESOURCE_ATTRIBUTES.__contains__,
        )
        # Swap upstream's collector for the exemplar-aware one, keeping its settings.
        self.registry.unregister(self._collector)
        self._collector = ExemplarCollector(resource_attribute_filter=WORKER_RESOURCE_ATTRIBUTES.__contains__)
        self._collector._callback = self.collect  # type: ignore[assignment]
        self.registry.register(self._collector)
        self.slow_steps = slow_steps or default_slow_step_buffer()
        self.server = EmbeddedServer(host, port, make_app(self.registry, self.slow_steps))
        if start_server and self.server.start():
            _live.append(self)
            _LOG.info(
                "otel_ml: metrics on %s, slow steps on %s", self.url, self.url[: -len("/metrics")] + "/slow-steps"
            )

    @property
    def url(self) -> str:
        """The ``/metrics`` URL actually served."""
        return self.server.url

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: object) -> None:
        self.server.stop()
        if self in _live:
            _live.remove(self)
        super().shutdown(timeout_millis=timeout_millis, **kwargs)


_live: list[OtelMLPrometheusMetricReader] = []


def embedded_url() -> str | None:
    """The ``/metrics`` URL of this process's embedded endpoint, or None when none is serving."""
    for reader in reversed(_live):
        if reader.server.running:
            return reader.url
    return None
