"""record_many: the same sums, counts and buckets as one record per value, through the SDK's own aggregations."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.metrics.view import View

from otel_ml._core.pending import NO_EXEMPLAR, record_many_for
from otel_ml.distro import _accelerate, _sdk_internals

ATTRS = {"ml.model.name": "m", "ml.inference.warmup": False}
VALUES = [0.002, 0.02, 0.2, 2.0, 0.02]


def _internals() -> _sdk_internals.BatchInternals:
    internals = _sdk_internals.batch_internals()
    assert internals is not None  # every supported SDK (1.33 to the newest) has what the fast path reads
    return internals


def _aggregations(histogram, attrs):  # type: ignore[no-untyped-def]
    return _accelerate._aggregations(_internals(), histogram, attrs)


def _points(reader: InMemoryMetricReader) -> list:  # type: ignore[type-arg]
    data = reader.get_metrics_data()
    if data is None:  # a delta collection with nothing new
        return []
    metrics_ = [m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics]
    return [p for m in metrics_ for p in m.data.data_points]


def test_many_values_match_one_record_each_on_every_reader() -> None:
    fast, slow, other = InMemoryMetricReader(), InMemoryMetricReader(), InMemoryMetricReader()
    fast_provider = MeterProvider(metric_readers=[fast, other])
    slow_provider = MeterProvider(metric_readers=[slow])
    histogram = fast_provider.get_meter("t").create_histogram("h", unit="s")
    reference = slow_provider.get_meter("t").create_histogram("h", unit="s")
    record_many_for(histogram)(VALUES, ATTRS, NO_EXEMPLAR)
    assert _aggregations(histogram, ATTRS) is not None  # the fast path is the one taken on the supported SDKs
    record_many_for(histogram)(VALUES[:2], ATTRS, NO_EXEMPLAR)
    for value in VALUES + VALUES[:2]:
        reference.record(value, ATTRS, context=NO_EXEMPLAR)
    [expected] = _points(slow)
    for reader in (fast, other):
        [point] = _points(reader)
        assert (point.count, point.sum, point.min, point.max) == (expected.count, expected.sum, 0.002, 2.0)
        assert list(point.bucket_counts) == list(expected.bucket_counts)
        assert dict(point.attributes) == ATTRS and point.exemplars == []


def test_a_view_that_keeps_some_attributes_is_honoured() -> None:
    reader = InMemoryMetricReader()
    view = View(instrument_name="h", attribute_keys={"ml.model.name"})
    provider = MeterProvider(metric_readers=[reader], views=[view])
    histogram = provider.get_meter("t").create_histogram("h")
    record_many_for(histogram)(VALUES, ATTRS, NO_EXEMPLAR)
    [point] = _points(reader)
    assert dict(point.attributes) == {"ml.model.name": "m"} and point.count == len(VALUES)


def test_a_proxy_or_no_op_instrument_falls_back_to_record() -> None:
    histogram = metrics.NoOpMeterProvider().get_meter("t").create_histogram("h")
    assert _accelerate.record_many_for(histogram) is None
    record_many_for(histogram)(VALUES, ATTRS, NO_EXEMPLAR)  # no error, nothing recorded


def test_once_the_aggregation_exists_no_value_goes_through_the_public_record() -> None:
    reader = InMemoryMetricReader()
    histogram = MeterProvider(metric_readers=[reader]).get_meter("t").create_histogram("h")
    public = histogram.record
    calls: list[float] = []

    def counting(value, attributes=None, context=None):  # type: ignore[no-untyped-def]
        calls.append(value)
        public(value, attributes, context=context)

    histogram.record = counting  # type: ignore[method-assign]
    record_many = record_many_for(histogram)
    record_many(VALUES, ATTRS, NO_EXEMPLAR)
    record_many(VALUES, ATTRS, NO_EXEMPLAR)
    assert calls == [VALUES[0]]  # only the first value, which created the aggregation
    [point] = _points(reader)
    assert (point.count, point.sum) == (2 * len(VALUES), sum(VALUES + VALUES))


def test_a_histogram_of_another_shape_is_left_untouched_for_the_per_value_path() -> None:
    reader = InMemoryMetricReader()
    histogram = MeterProvider(metric_readers=[reader]).get_meter("t").create_histogram("h")
    histogram.record(1.0, ATTRS)
    [target] = _aggregations(histogram, ATTRS) or []
    aggregation = target.aggregation
    before = (list(aggregation._value), aggregation._sum)
    boundaries = aggregation._boundaries
    del aggregation._boundaries  # an SDK that names its buckets otherwise
    assert _internals().feed_histogram(aggregation, VALUES) is False
    assert (list(aggregation._value), aggregation._sum) == before
    aggregation._boundaries = boundaries
    assert _internals().feed_histogram(aggregation, VALUES) is True
    [point] = _points(reader)
    total = 1.0
    for value in VALUES:  # in order, as one record per value adds them
        total += value
    assert (point.count, point.sum) == (1 + len(VALUES), total)


@pytest.mark.parametrize("kind", ["histogram", "counter"])
def test_delta_collections_racing_the_batches_lose_and_double_nothing(kind: str) -> None:
    """A delta reader collecting while batches arrive: every value in exactly one collection.

    SDK 1.45.2 replaces a view's aggregations at each delta collection; a batch
    handed to an aggregation already collected would be lost for good.
    """
    from opentelemetry.sdk.metrics import Counter, Histogram
    from opentelemetry.sdk.metrics.export import AggregationTemporality

    delta = {Histogram: AggregationTemporality.DELTA, Counter: AggregationTemporality.DELTA}
    reader = InMemoryMetricReader(preferred_temporality=delta)  # type: ignore[arg-type]
    meter = MeterProvider(metric_readers=[reader]).get_meter("t")
    instrument = meter.create_histogram("h") if kind == "histogram" else meter.create_counter("c")
    record_many = record_many_for(instrument)
    totals = {"count": 0, "sum": 0.0}
    done = threading.Event()

    def collect() -> None:
        for point in _points(reader):
            totals["count"] += point.count if kind == "histogram" else 0
            totals["sum"] += point.sum if kind == "histogram" else point.value

    def collector() -> None:
        while not done.is_set():
            collect()

    thread = threading.Thread(target=collector)
    thread.start()
    try:
        for _ in range(2_000):
            record_many([1.0] * 5, ATTRS, NO_EXEMPLAR)
    finally:
        done.set()
        thread.join()
    collect()
    assert totals["sum"] == 10_000
    if kind == "histogram":
        assert totals["count"] == 10_000


def test_a_feed_that_fails_hands_the_batch_to_the_public_api_and_gives_up_the_fast_path(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    reader = InMemoryMetricReader()
    histogram = MeterProvider(metric_readers=[reader]).get_meter("t").create_histogram("h")
    record_many = record_many_for(histogram)
    record_many(VALUES, ATTRS, NO_EXEMPLAR)  # the fast path, warmed up

    def broken(target: Any, write: Any) -> None:
        raise AttributeError("_get_or_create_aggregation")

    monkeypatch.setattr(_sdk_internals.BatchInternals, "feed", staticmethod(broken))
    try:
        record_many(VALUES, ATTRS, NO_EXEMPLAR)
        assert _sdk_internals.batch_internals() is None  # given up: the public API from now on
        [point] = _points(reader)
        assert point.count == 2 * len(VALUES)
    finally:
        with _sdk_internals.forced_fallbacks():
            pass  # probe afresh for the next tests
