"""The Prometheus translation of ``/metrics``, with exemplars, on public APIs only.

``opentelemetry-exporter-prometheus`` translates names, units and labels but
drops the exemplars the SDK attaches to histogram and counter points, and its
collector is a private class whose constructor and hooks change from one
release to the next (0.63 added ``registry``, 0.66 ``resource_attribute_filter``).
This collector therefore does the translation itself, from the SDK's public
data model (``MetricsData`` and its points) to ``prometheus_client``'s public
metric families, following upstream rule for rule (the 0.66 exporter: names
and labels sanitised, units mapped and appended, ``target_info``, the
``otel_scope_*`` labels, non-monotonic sums as gauges); ``tests/test_exporter.py``
checks that the classic text is byte for byte upstream's wherever the installed
exporter has the same options. It adds ``exemplar`` on the ``_bucket`` sample
whose range holds the exemplar's value and on a counter's ``_total``;
prometheus_client renders them in OpenMetrics and leaves them out of the
classic text format. One deliberate difference: where one metric name comes
from several instrumentation scopes with other attribute keys (Keras's
``ml.train.loss`` beside tf.summary's, or a program's own instrument of that
name), upstream renders every point under the first scope's label names and so
shifts the others' values; here each point keeps its own labels.

The SDK drains exemplar reservoirs at each collection, so a ``curl`` would
steal the exemplar from the next Prometheus scrape. The latest exemplar of
each bucket is therefore kept until a newer one replaces it.
"""

from __future__ import annotations

import bisect
import logging
import re
import threading
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from itertools import chain
from json import dumps
from typing import Any

from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricsData,
    Sum,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, InfoMetricFamily
from prometheus_client.core import Metric as PrometheusMetric
from prometheus_client.samples import Exemplar

from otel_ml._core.text import valid_label

_LOG = logging.getLogger(__name__)

# (family id, label values, bucket index or -1 for a counter) -> exemplar
_Key = tuple[str, tuple[tuple[str, str], ...], int]

# The names and rules of the OpenTelemetry specification's Prometheus compatibility
# section, as opentelemetry-exporter-prometheus 0.66 (its ``_mapping``) applies them.
_TARGET_INFO_NAME, _TARGET_INFO_DESCRIPTION = "target", "Target metadata"
_SCOPE_NAME, _SCOPE_VERSION, _SCOPE_SCHEMA_URL, _SCOPE_ATTRIBUTE = (
    "otel_scope_name",
    "otel_scope_version",
    "otel_scope_schema_url",
    "otel_scope_",
)
_NAME_INVALID = re.compile(r"[^a-zA-Z0-9:]+")
_LABEL_INVALID = re.compile(r"[^a-zA-Z0-9]+")
_UNIT_ANNOTATION = re.compile(r"{.*}")
_UNITS = {
    **{"d": "days", "h": "hours", "min": "minutes", "s": "seconds", "ms": "milliseconds"},
    **{"us": "microseconds", "ns": "nanoseconds", "By": "bytes", "KiBy": "kibibytes", "MiBy": "mebibytes"},
    **{"GiBy": "gibibytes", "TiBy": "tibibytes", "KBy": "kilobytes", "MBy": "megabytes", "GBy": "gigabytes"},
    **{"TBy": "terabytes", "m": "meters", "V": "volts", "A": "amperes", "J": "joules", "W": "watts"},
    **{"g": "grams", "Cel": "celsius", "Hz": "hertz", "1": "", "%": "percent"},
}
_PER_UNITS = {"s": "second", "m": "minute", "h": "hour", "d": "day", "w": "week", "mo": "month", "y": "year"}


def metric_name(name: str) -> str:
    """A metric name as Prometheus accepts it (a leading digit becomes ``_``)."""
    if name and name[0].isdigit():
        name = "_" + name[1:]
    return _NAME_INVALID.sub("_", name)


def label_name(key: str) -> str:
    """An attribute key as a Prometheus label name."""
    if key and key[0].isdigit():
        key = "_" + key[1:]
    return _LABEL_INVALID.sub("_", key)


def unit_suffix(unit: str) -> str:
    """The suffix a UCUM unit gives a metric name: ``s`` -> ``seconds``, ``By/s`` -> ``bytes_per_second``."""
    unit = _UNIT_ANNOTATION.sub("", unit)
    if unit in _UNITS:
        return _UNITS[unit]
    top, _, bottom = unit.partition("/")
    if bottom and _NAME_INVALID.sub("_", bottom):
        top, bottom = _NAME_INVALID.sub("_", top), _NAME_INVALID.sub("_", bottom)
        top, bottom = _UNITS.get(top, top), _PER_UNITS.get(bottom, bottom)
        return f"{top}_per_{bottom}" if top else f"per_{bottom}"
    return _NAME_INVALID.sub("_", unit).strip("_")


def _label_value(value: Any) -> str:
    # valid_label: a string the SDK took from outside may not be valid UTF-8 (see otel_ml._core.text);
    # JSON escapes non-ASCII itself.
    return valid_label(value) if isinstance(value, str) else dumps(value, default=str)


def _as_gauge(metric: Metric) -> bool:
    """The compatibility rule: a cumulative non-monotonic sum is a gauge."""
    data = metric.data
    return isinstance(data, Sum) and (
        not data.is_monotonic and data.aggregation_temporality == AggregationTemporality.CUMULATIVE
    )


class ExemplarCollector:
    """A ``prometheus_client`` collector of the SDK's metrics, with exemplars kept across scrapes.

    ``callback`` (the reader's ``collect``) is called at each scrape to pull
    fresh data in through :meth:`add_metrics_data`. Scrapes are serialised.

    Args:
        resource_attribute_filter: Which resource attributes become labels on every sample.
        disable_target_info: Leave out the ``target_info`` family.
    """

    def __init__(
        self, resource_attribute_filter: Callable[[str], bool] | None = None, disable_target_info: bool = False
    ) -> None:
        self.callback: Callable[[], object] | None = None
        self._resource_attribute_filter = resource_attribute_filter
        self._disable_target_info = disable_target_info
        self._target_info: PrometheusMetric | None = None
        self._datas: deque[MetricsData] = deque()
        self._exemplars: dict[_Key, Exemplar] = {}
        self._fids_with_exemplars: set[str] = set()
        self._scrape_lock = threading.Lock()
        self._failed: set[str] = set()  # metrics already reported as not rendered

    def add_metrics_data(self, metrics_data: MetricsData) -> None:
        """Queue one collection for the scrape in progress."""
        self._datas.append(metrics_data)

    def collect(self) -> Iterable[PrometheusMetric]:
        # One scrape at a time: a concurrent scrape waits and then gets a
        # complete, fresh result rather than half of another one's data.
        with self._scrape_lock:
            if self.callback is not None:
                self.callback()
            families: dict[str, PrometheusMetric] = {}
            result: list[PrometheusMetric] = []
            if self._datas and not self._disable_target_info:
                if self._target_info is None:
                    attributes: dict[str, Any] = {}
                    for resource_metrics in self._datas[0].resource_metrics:
                        attributes = {**attributes, **resource_metrics.resource.attributes}
                    self._target_info = self._info(attributes)
                families[_TARGET_INFO_NAME] = self._target_info
            while self._datas:
                self._translate(self._datas.popleft(), families)
                result = list(families.values())
            return result

    @staticmethod
    def _info(attributes: dict[str, Any]) -> PrometheusMetric:
        labels = {label_name(key): _label_value(value) for key, value in attributes.items()}
        info = InfoMetricFamily(_TARGET_INFO_NAME, _TARGET_INFO_DESCRIPTION, labels=labels)  # type: ignore[arg-type]
        info.add_metric(labels=list(labels), value=labels)
        return info

    def _translate(self, data: MetricsData, families: dict[str, PrometheusMetric]) -> None:
        for resource_metrics in data.resource_metrics:
            keep = self._resource_attribute_filter
            resource_labels = {k: v for k, v in resource_metrics.resource.attributes.items() if keep(k)} if keep else {}
            for scope_metrics in resource_metrics.scope_metrics:
                scope = scope_metrics.scope
                scope_labels: dict[str, Any] = {
                    _SCOPE_ATTRIBUTE + key: value for key, value in (getattr(scope, "attributes", None) or {}).items()
                }
                scope_labels[_SCOPE_NAME] = scope.name or ""
                scope_labels[_SCOPE_VERSION] = scope.version or ""
                scope_labels[_SCOPE_SCHEMA_URL] = scope.schema_url or ""
                for metric in scope_metrics.metrics:
                    try:
                        self._translate_metric(metric, chain(resource_labels.items(), scope_labels.items()), families)
                    except Exception as exc:  # noqa: BLE001 - one metric that cannot be rendered, not every one
                        if metric.name not in self._failed:
                            self._failed.add(metric.name)
                            _LOG.warning(
                                "otel_ml: /metrics leaves out %r, which cannot be rendered (%s: %s)",
                                valid_label(metric.name),
                                type(exc).__name__,
                                exc,
                            )

    def _translate_metric(
        self, metric: Metric, shared: Iterable[tuple[str, Any]], families: dict[str, PrometheusMetric]
    ) -> None:
        data = metric.data
        points: Sequence[Any] = data.data_points
        kind: Any
        if isinstance(data, Sum) and not _as_gauge(metric):
            kind = CounterMetricFamily
        elif isinstance(data, Gauge) or _as_gauge(metric):
            kind = GaugeMetricFamily
        elif isinstance(data, Histogram):
            kind = HistogramMetricFamily
        else:
            _LOG.warning("Unsupported metric data. %s", type(data))
            return
        name, unit = metric_name(metric.name), unit_suffix(metric.unit or "")
        description = valid_label(metric.description or "")
        shared = list(shared)
        keys: set[str] = set()
        rows: list[dict[str, str]] = []
        for point in points:
            attributes = (point.attributes or {}).items()
            labels = {label_name(key): _label_value(value) for key, value in chain(shared, attributes)}
            keys.update(labels)
            rows.append(labels)
        label_keys = sorted(keys)
        fid = "|".join((name, description, unit, kind.__name__))
        # Each metric gets a family of its own label names. Two instrumentation scopes (or a
        # program's own instrument) may record one name with other attribute keys: their samples
        # join the family already there, each with its own labels, never under that family's
        # label names (which would shift every value to another label).
        own: Any = kind(name=name, documentation=description, labels=label_keys, unit=unit)
        family: Any = families.get(fid)  # joined at the end: a metric that fails half-way adds nothing
        with_exemplars = kind is not GaugeMetricFamily and (
            fid in self._fids_with_exemplars or any(getattr(p, "exemplars", None) for p in points)
        )
        for labels, point in zip(rows, points, strict=True):
            values = [labels.get(key, "") for key in label_keys]
            start = len(own.samples)
            if isinstance(point, HistogramDataPoint):
                buckets, total = [], 0
                for bound, count in zip(chain(point.explicit_bounds, ["+Inf"]), point.bucket_counts, strict=False):
                    total += count
                    buckets.append((f"{bound}", total))
                own.add_metric(values, buckets=buckets, sum_value=point.sum)
                if with_exemplars:
                    self._attach_histogram(fid, own.samples, start, tuple(zip(label_keys, values, strict=True)), point)
            else:
                own.add_metric(values, point.value)
                if with_exemplars and kind is CounterMetricFamily:
                    key = (fid, tuple(zip(label_keys, values, strict=True)), -1)
                    self._remember(key, getattr(point, "exemplars", None) or ())
                    kept = self._exemplars.get(key)
                    if kept is not None:
                        own.samples[start] = own.samples[start]._replace(exemplar=kept)
        if family is None:
            families[fid] = own
        else:
            family.samples.extend(own.samples)

    def _attach_histogram(
        self, fid: str, samples: list[Any], start: int, labels: tuple[tuple[str, str], ...], point: Any
    ) -> None:
        bounds = point.explicit_bounds
        by_bucket: dict[int, list[Any]] = {}
        for exemplar in getattr(point, "exemplars", None) or ():
            by_bucket.setdefault(bisect.bisect_left(bounds, exemplar.value), []).append(exemplar)
        for bucket, found in by_bucket.items():
            self._remember((fid, labels, bucket), found)
        for bucket in range(len(bounds) + 1):
            kept = self._exemplars.get((fid, labels, bucket))
            if kept is not None:
                samples[start + bucket] = samples[start + bucket]._replace(exemplar=kept)

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
