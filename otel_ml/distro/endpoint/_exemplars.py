"""Upstream's Prometheus translation, plus exemplars.

``opentelemetry-exporter-prometheus`` translates names, units and labels but
drops the exemplars the SDK attaches to histogram and counter points. This
collector lets upstream build every family, then sets ``exemplar`` on the
samples upstream produced: on the ``_bucket`` sample whose range holds the
exemplar's value, and on a counter's ``_total``. prometheus_client renders
them in OpenMetrics and leaves them out of the classic text format.

The SDK drains exemplar reservoirs at each collection, so a ``curl`` would
steal the exemplar from the next Prometheus scrape. The latest exemplar of
each bucket is therefore kept until a newer one replaces it.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable, Sequence
from typing import Any

from opentelemetry.exporter.prometheus import _CustomCollector, _should_convert_sum_to_gauge
from opentelemetry.exporter.prometheus._mapping import map_unit
from opentelemetry.sdk.metrics.export import Histogram, Metric, Sum
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.core import Metric as PrometheusMetric
from prometheus_client.samples import Exemplar

# (family id, label values, bucket index or -1 for a counter) -> exemplar
_Key = tuple[str, tuple[str, ...], int]


class ExemplarCollector(_CustomCollector):  # type: ignore[misc]
    """A ``_CustomCollector`` that keeps and attaches exemplars; scrapes are serialised."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._exemplars: dict[_Key, Exemplar] = {}
        self._fids_with_exemplars: set[str] = set()
        self._point_exemplars: list[Sequence[Any]] = []
        self._scrape_lock = threading.Lock()

    def collect(self) -> Iterable[PrometheusMetric]:
        # One scrape at a time: a concurrent scrape waits and then gets a
        # complete, fresh result rather than half of another one's data.
        with self._scrape_lock:
            return list(super().collect())

    def _collect_data_points(self, metric_data: Any, scope_attrs: Any, resource_attrs: Any) -> Any:
        # Upstream builds one label row per data point, in order; remember the
        # exemplars in the same order so they can be matched to the rows.
        self._point_exemplars = [getattr(point, "exemplars", ()) or () for point in metric_data.data_points]
        return super()._collect_data_points(metric_data, scope_attrs, resource_attrs)

    def _translate_metric(
        self,
        metric: Metric,
        scope_attrs: dict[str, Any],
        resource_attrs: dict[str, Any],
        metric_family_id_metric_family: dict[str, PrometheusMetric],
    ) -> None:
        fid = self._family_id(metric)
        family = metric_family_id_metric_family.get(fid) if fid else None
        start = len(family.samples) if family is not None else 0
        super()._translate_metric(metric, scope_attrs, resource_attrs, metric_family_id_metric_family)
        if fid is None or (fid not in self._fids_with_exemplars and not any(self._point_exemplars)):
            return  # the common case: nothing to attach, nothing kept
        family = metric_family_id_metric_family.get(fid)
        if family is not None and len(family.samples) > start:
            self._attach(fid, family, start, metric)

    def _family_id(self, metric: Metric) -> str | None:
        """The key upstream files this metric's family under, for histograms and counters only."""
        if isinstance(metric.data, Histogram):
            kind = HistogramMetricFamily.__name__
        elif isinstance(metric.data, Sum) and not _should_convert_sum_to_gauge(metric):
            kind = CounterMetricFamily.__name__
        else:
            return None
        name = self._resolve_metric_name(metric.name)
        return "|".join((name, metric.description or "", map_unit(metric.unit or ""), kind))

    def _attach(self, fid: str, family: PrometheusMetric, start: int, metric: Metric) -> None:
        samples = family.samples
        points: Sequence[Any] = metric.data.data_points
        if isinstance(metric.data, Histogram):
            # Upstream adds, per point: one _bucket per bound, +Inf, then _count and _sum.
            width = len(points[0].explicit_bounds) + 3 if points else 0
            for i, point in enumerate(points):
                block = start + i * width
                if block + width > len(samples):
                    return
                self._attach_histogram(fid, samples, block, point.explicit_bounds, self._point_exemplars[i])
        elif family.type == "counter":
            for i in range(min(len(points), len(samples) - start)):
                index = start + i
                key = (fid, tuple(samples[index].labels.values()), -1)
                self._remember(key, self._point_exemplars[i])
                kept = self._exemplars.get(key)
                if kept is not None:
                    samples[index] = samples[index]._replace(exemplar=kept)

    def _attach_histogram(
        self, fid: str, samples: list[Any], block: int, bounds: Sequence[float], exemplars: Sequence[Any]
    ) -> None:
        labels = tuple(v for k, v in samples[block].labels.items() if k != "le")
        by_bucket: dict[int, list[Any]] = {}
        for exemplar in exemplars:
            by_bucket.setdefault(bisect.bisect_left(bounds, exemplar.value), []).append(exemplar)
        for bucket, found in by_bucket.items():
            self._remember((fid, labels, bucket), found)
        for bucket in range(len(bounds) + 1):
            kept = self._exemplars.get((fid, labels, bucket))
            if kept is not None:
                samples[block + bucket] = samples[block + bucket]._replace(exemplar=kept)

    def _remember(self, key: _Key, exemplars: Sequence[Any]) -> None:
        newest = None
        for exemplar in exemplars:
            if exemplar.trace_id is None or exemplar.span_id is None:
                continue
            if newest is None or exemplar.time_unix_nano >= newest.time_unix_nano:
                newest = exemplar
        if newest is None:
            return
        self._fids_with_exemplars.add(key[0])
        self._exemplars[key] = Exemplar(
            {"trace_id": format(newest.trace_id, "032x"), "span_id": format(newest.span_id, "016x")},
            newest.value,
            newest.time_unix_nano / 1e9,
        )
