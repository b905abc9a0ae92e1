"""Each private OpenTelemetry name otel_ml reads has a public fallback that gives the same figures.

Every test here forces a fallback (``_sdk_internals.forced_fallbacks``, as if
the probe had failed) or runs the public replacement of a private name, and
compares what it produces with the fast path or with the SDK's own
implementation: exact counts, sums, buckets, exemplar ids.
"""

from __future__ import annotations

import logging
import random

import pytest
from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.sdk.metrics import MeterProvider, SimpleFixedSizeExemplarReservoir
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator

from otel_ml._core.pending import NO_EXEMPLAR, record_many_for
from otel_ml.distro import _accelerate, _exit, _private_random, _sdk, _sdk_internals

ATTRS = {"ml.model.name": "m", "ml.inference.warmup": False}
VALUES = [0.002, 0.02, 0.2, 2.0, 0.02, 7.5, 0.0]


def _figures(reader: InMemoryMetricReader) -> dict[str, list[tuple[object, ...]]]:
    found: dict[str, list[tuple[object, ...]]] = {}
    for rm in reader.get_metrics_data().resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for p in metric.data.data_points:
                    shape = (
                        (p.count, p.sum, p.min, p.max, tuple(p.bucket_counts))
                        if hasattr(p, "bucket_counts")
                        else (p.value,)
                    )
                    found.setdefault(metric.name, []).append((tuple(sorted(p.attributes.items())), *shape))
    return found


def _batches(forced: bool) -> dict[str, list[tuple[object, ...]]]:
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("t")
    histogram, counter = meter.create_histogram("h", unit="s"), meter.create_counter("c")
    for instrument in (histogram, counter):
        if forced:
            assert _accelerate.record_many_for(instrument) is None  # the public API, one value at a time
        else:
            assert _accelerate.record_many_for(instrument) is not None
        record_many = record_many_for(instrument)
        record_many(VALUES, ATTRS, NO_EXEMPLAR)
        record_many(VALUES[:3], ATTRS, NO_EXEMPLAR)
        record_many(VALUES[2:], {"other": 1}, NO_EXEMPLAR)
    return _figures(reader)


def test_the_batch_hand_over_falls_back_to_one_record_per_value_with_the_same_figures(caplog) -> None:
    fast = _batches(forced=False)
    with caplog.at_level(logging.INFO, logger="otel_ml"), _sdk_internals.forced_fallbacks(_sdk_internals.BATCH):
        slow = _batches(forced=True)
        _batches(forced=True)
    assert slow == fast
    assert fast["h"][0][1] == len(VALUES) + 3  # the figures are real, not two empty results
    (line,) = [r.getMessage() for r in caplog.records if _sdk_internals.BATCH in r.getMessage()]
    assert "values are recorded one by one" in line and "opentelemetry-sdk " in line


def test_an_sdk_whose_internals_moved_at_run_time_gives_up_once_and_keeps_exact_counts(caplog) -> None:
    reader = InMemoryMetricReader()
    histogram = MeterProvider(metric_readers=[reader]).get_meter("t").create_histogram("h")
    record_many = _accelerate.record_many_for(histogram)
    assert record_many is not None
    internals = _sdk_internals.batch_internals()
    assert internals is not None
    original = internals.aggregations

    def moved(instrument, attrs):  # type: ignore[no-untyped-def]
        raise AttributeError("'_ViewInstrumentMatch' object has no attribute '_attributes_aggregation'")

    internals.aggregations = moved  # type: ignore[method-assign]
    try:
        with caplog.at_level(logging.INFO, logger="otel_ml"):
            record_many(VALUES, ATTRS, NO_EXEMPLAR)
            record_many(VALUES, ATTRS, NO_EXEMPLAR)
    finally:
        internals.aggregations = original  # type: ignore[method-assign]
    [(_, count, total, *_)] = _figures(reader)["h"]
    assert (count, total) == (2 * len(VALUES), sum(VALUES) + sum(VALUES))
    assert _sdk_internals.batch_internals() is None  # given up for the process...
    assert len([r for r in caplog.records if "does not work with this OpenTelemetry SDK" in r.getMessage()]) == 1
    with _sdk_internals.forced_fallbacks():
        pass  # ...until probed afresh
    assert _sdk_internals.batch_internals() is not None


def test_the_shutdown_flag_falls_back_to_shutting_down_again(caplog) -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    provider.get_meter("t").create_counter("c").add(3)
    assert _sdk_internals.already_shut_down(provider) is False
    provider.shutdown()
    assert _sdk_internals.already_shut_down(provider) is True
    with _sdk_internals.forced_fallbacks(_sdk_internals.SHUTDOWN_FLAG):
        assert _sdk_internals.already_shut_down(provider) is False
        # At exit the provider is shut down again: the SDK warns, nothing breaks.
        _exit._providers.append(provider)
        _exit._timeout.append(1.0)
        try:
            with caplog.at_level(logging.WARNING):
                _exit._at_exit()
        finally:
            _exit._timeout.pop()
    assert not [r for r in caplog.records if r.name.startswith("otel_ml") and r.levelno >= logging.WARNING]


class _Reference(SimpleFixedSizeExemplarReservoir):
    """The specification's algorithm (SDK 1.45's): the first ``size`` measurements fill the cells, no draw."""

    def _find_bucket_index(self, value, time_unix_nano, attributes, context):  # type: ignore[no-untyped-def]
        self._measurements_seen += 1
        if self._measurements_seen <= self._size:
            return self._measurements_seen - 1
        index = random.randrange(0, self._measurements_seen)
        if index < self._size:
            return index
        from opentelemetry.sdk.metrics._internal.exemplar.exemplar_reservoir import BucketIndexError

        raise BucketIndexError("not sampled")


def _sdk_at_least(major_minor: tuple[int, int]) -> bool:
    from importlib.metadata import version

    return tuple(int(part) for part in version("opentelemetry-sdk").split(".")[:2]) >= major_minor


@pytest.mark.parametrize("size", [1, 3])
@pytest.mark.parametrize("reference", ["sdk", "specification"])
def test_the_private_reservoir_samples_as_the_sdks_does(size: int, reference: str) -> None:
    """Same algorithm: with both generators in the same state, the same exemplars, field for field."""
    if reference == "sdk" and not _sdk_at_least((1, 45)):
        pytest.skip("SDKs before 1.45 drew for the first measurement too (an off-by-one fixed in 1.45)")
    tracer = TracerProvider(id_generator=_CountingIds()).get_tracer("t")  # ids that draw from no generator
    theirs = SimpleFixedSizeExemplarReservoir(size) if reference == "sdk" else _Reference(size)
    ours = _private_random.PrivateRandomExemplarReservoir(size=size)
    state = random.getstate()
    try:
        random.seed(11)
        _private_random._PRIVATE.seed(11)
        for round_ in range(3):
            for i in range(40):
                attributes = {"ml.model.name": "m", "step": i}
                if i % 3:
                    with tracer.start_as_current_span("s") as span:
                        context = trace.set_span_in_context(span)
                        for reservoir in (ours, theirs):
                            reservoir.offer(float(i), 1000 * round_ + i, attributes, context)
                else:
                    for reservoir in (ours, theirs):
                        reservoir.offer(float(i), 1000 * round_ + i, attributes, Context())
            mine, sdk = ours.collect({"ml.model.name": "m"}), theirs.collect({"ml.model.name": "m"})
            assert len(mine) == size
            assert [vars_of(e) for e in mine] == [vars_of(e) for e in sdk]
        assert ours.collect({}) == [] and theirs.collect({}) == []
    finally:
        random.setstate(state)


class _CountingIds(IdGenerator):
    def __init__(self) -> None:
        self.last = 0

    def generate_span_id(self) -> int:
        self.last += 1
        return self.last

    def generate_trace_id(self) -> int:
        self.last += 1
        return self.last


def vars_of(exemplar: object) -> tuple[object, ...]:
    fields = ("filtered_attributes", "value", "time_unix_nano", "span_id", "trace_id")
    return tuple(getattr(exemplar, name) for name in fields)


def test_seed_safe_views_keep_the_sdks_exemplars_and_never_touch_random() -> None:
    """Histograms: the SDK's bucket reservoir (the same exemplars as without the view); counters: ours."""
    tracer = TracerProvider(id_generator=_private_random.PrivateRandomIdGenerator()).get_tracer("t")
    ours, theirs = InMemoryMetricReader(), InMemoryMetricReader()
    mine = MeterProvider(metric_readers=[ours], views=_private_random.seed_safe_views()).get_meter("t")
    sdk = MeterProvider(metric_readers=[theirs]).get_meter("t")
    histogram, counter, reference = mine.create_histogram("h"), mine.create_counter("c"), sdk.create_histogram("h")
    random.seed(3)
    expected = random.random()
    random.seed(3)
    spans = []
    for value in (0.5, 3.0, 70.0, 4.0):
        with tracer.start_as_current_span("step") as span:
            spans.append(span.get_span_context())
            histogram.record(value, ATTRS)
            reference.record(value, ATTRS)
            counter.add(1, ATTRS)
    assert random.random() == expected  # nothing drew from the program's generator

    def exemplars(reader: InMemoryMetricReader) -> dict[str, list[tuple[float, int, int]]]:
        return {
            m.name: [(e.value, e.trace_id, e.span_id) for p in m.data.data_points for e in p.exemplars]
            for rm in reader.get_metrics_data().resource_metrics
            for sm in rm.scope_metrics
            for m in sm.metrics
        }

    found, reference_found = exemplars(ours), exemplars(theirs)
    # The latest per bucket: 4.0 in (0, 5], 70.0 in (50, 75].
    ids = [(4.0, spans[3].trace_id, spans[3].span_id), (70.0, spans[2].trace_id, spans[2].span_id)]
    assert found["h"] == reference_found["h"] == ids
    assert len(found["c"]) == 1 and found["c"][0][1:] in {(s.trace_id, s.span_id) for s in spans}


def test_an_id_generator_named_in_the_environment_comes_from_its_entry_point(monkeypatch) -> None:
    monkeypatch.setenv("OTEL_PYTHON_ID_GENERATOR", "random")
    assert type(_sdk._id_generator()) is RandomIdGenerator
    monkeypatch.delenv("OTEL_PYTHON_ID_GENERATOR")
    assert type(_sdk._id_generator()) is _private_random.PrivateRandomIdGenerator


def test_the_apis_placeholders_are_told_from_real_providers_without_private_names() -> None:
    class VendorProvider(metrics.MeterProvider):
        def get_meter(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            return metrics.NoOpMeter("x")

    proxy = metrics.get_meter_provider() if not _sdk.is_sdk_meter_provider(metrics.get_meter_provider()) else None
    if proxy is not None:
        assert type(proxy).__name__ == "_ProxyMeterProvider"
    assert _sdk.is_sdk_meter_provider(metrics.NoOpMeterProvider()) is False
    from opentelemetry.metrics import _internal as api_internal  # the test may name it; otel_ml does not

    assert _sdk.is_sdk_meter_provider(api_internal._ProxyMeterProvider()) is False
    assert _sdk.is_sdk_meter_provider(MeterProvider()) is True
    assert _sdk.is_sdk_meter_provider(VendorProvider()) is True


def _gauge_values(forced: bool) -> list[list[float]]:
    reader = InMemoryMetricReader()
    with _sdk_internals.forced_fallbacks(_sdk_internals.GAUGE) if forced else _nothing():
        provider = MeterProvider(metric_readers=[reader], views=_private_random.seed_safe_views())
    meter = provider.get_meter("t")
    loss, steps = meter.create_gauge("ml.train.loss"), meter.create_counter("ml.train.steps")
    collections = []
    for epoch_loss in (0.5, None, 0.25, None):
        if epoch_loss is not None:
            loss.set(epoch_loss, ATTRS)
        steps.add(1, ATTRS)
        points = _figures(reader)
        collections.append([point[1] for point in points.get("ml.train.loss", [])] + [points["ml.train.steps"][0][1]])
    provider.shutdown()
    return collections


def _nothing():  # type: ignore[no-untyped-def]
    import contextlib

    return contextlib.nullcontext()


def test_a_synchronous_gauge_keeps_its_value_across_collections_under_otel_mls_views() -> None:
    """As SDK 1.45 does on its own; on older SDKs otel_ml's views keep it (forced off: the SDK's behaviour)."""
    assert _gauge_values(forced=False) == [[0.5, 1], [0.5, 2], [0.25, 3], [0.25, 4]]
    forgets = _sdk_internals._sdk_forgets_gauges()
    expected_without = [[0.5, 1], [2], [0.25, 3], [4]] if forgets else [[0.5, 1], [0.5, 2], [0.25, 3], [0.25, 4]]
    assert _gauge_values(forced=True) == expected_without


_EXIT_PROGRAM = """
import logging, sys
logging.basicConfig(level=logging.DEBUG, stream=sys.stdout, format="%(name)s %(levelname)s %(message)s")
import otel_ml
from opentelemetry import metrics
otel_ml.instrument()
if sys.argv[1] == "shut":
    metrics.get_meter_provider().shutdown()
"""


@pytest.mark.slow
@pytest.mark.parametrize("shut", ["open", "shut"])
def test_the_shutdown_flag_is_read_at_interpreter_exit_without_a_fallback(tmp_path, shut: str) -> None:
    """The flag is read where it is needed, at exit: probing there must not take the fallback on a supported SDK."""
    import subprocess
    import sys

    script = tmp_path / "program.py"
    script.write_text(_EXIT_PROGRAM)
    done = subprocess.run(
        [sys.executable, str(script), shut],
        capture_output=True,
        text=True,
        timeout=60,
        env={**__import__("os").environ, "OTEL_ML_PORT": "0"},
    )
    assert done.returncode == 0, done.stderr
    lines = (done.stdout + done.stderr).splitlines()
    assert not [line for line in lines if "otel_ml.distro._sdk_internals" in line], lines
    # A provider the program shut down itself is not shut down again (the SDK would warn).
    assert not [line for line in lines if "shutdown can only be called once" in line.lower()], lines
