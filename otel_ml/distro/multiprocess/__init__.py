"""Pre-fork servers (gunicorn, uWSGI): every worker's telemetry on one exact ``/metrics``.

Each process publishes its cumulative points into a shared directory
(:mod:`._publish`); one small endpoint process per deployment serves their
sum (:mod:`._endpoint`, :mod:`._merge`), so a scrape never waits for a worker
and a recycled or crashed worker's totals are kept. :func:`reader_for` is the
hook the SDK set-up calls: it swaps the embedded endpoint's reader for a
publishing one when this process is part of such a deployment (:mod:`._mode`).
"""

from __future__ import annotations

from opentelemetry.sdk.metrics.export import MetricExporter, MetricReader

from otel_ml.distro.multiprocess._mode import Deployment, deployment, server_name


def reader_for(cls: type) -> MetricReader | None:
    """A publishing reader in place of the embedded endpoint's ``cls``; None when not multiprocess."""
    from otel_ml.distro.endpoint._reader import OtelMLPrometheusMetricReader

    if not issubclass(cls, OtelMLPrometheusMetricReader):
        return None
    found = deployment()
    if found is None:
        return None
    from otel_ml.distro.multiprocess._publish import PublishingReader

    return PublishingReader(found)


def exporter_for(exporter: MetricExporter) -> MetricExporter:
    """``exporter`` as it is, or with per-slot identity when this process is part of a pre-fork deployment."""
    found = deployment()
    if found is None:
        return exporter
    from otel_ml.distro.multiprocess._slot import identified

    return identified(exporter, found)


__all__ = ["Deployment", "deployment", "exporter_for", "reader_for", "server_name"]
