"""The embedded endpoint: both exposition formats, exemplars that survive scrapes, escaping, NaN/Inf."""

from __future__ import annotations

import logging
import math
import socket
import threading
import time

import pytest
from opentelemetry import trace
from opentelemetry.metrics import Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import Gauge, Metric, MetricsData, NumberDataPoint, ResourceMetrics, ScopeMetrics
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from otel_ml.distro.endpoint import OtelMLPrometheusMetricReader, SlowStepBuffer, _server
from otel_ml.distro.endpoint._exemplars import ExemplarCollector
from tests import _net

OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"


@pytest.fixture
def endpoint():  # type: ignore[no-untyped-def]
    reader = OtelMLPrometheusMetricReader(port=0, slow_steps=SlowStepBuffer(8))
    provider = MeterProvider(metric_readers=[reader], resource=Resource.create({"service.name": "svc"}))
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(reader.slow_steps)
    yield reader, provider.get_meter("test"), tracer_provider.get_tracer("test")
    provider.shutdown()


def _families(reader: OtelMLPrometheusMetricReader, accept: str | None) -> tuple[str, dict]:  # type: ignore[type-arg]
    status, content_type, body = _net.get(reader.url, accept=accept)
    assert status == 200
    parse = parse_openmetrics if accept else parse_text
    return content_type, {f.name: f for f in parse(body)}


def _record_slow(meter, tracer, value: float):  # type: ignore[no-untyped-def]
    histogram = meter.create_histogram(
        "ml.train.step.duration", unit="s", explicit_bucket_boundaries_advisory=[0.1, 1.0]
    )
    with tracer.start_as_current_span("keras.train_step") as span:
        histogram.record(value, {"ml.run.name": "r"})
    histogram.record(0.01, {"ml.run.name": "r"}, context=trace.set_span_in_context(trace.INVALID_SPAN))
    return histogram, span


def test_openmetrics_carries_exemplars_and_classic_text_does_not(endpoint) -> None:
    reader, meter, tracer = endpoint
    _, span = _record_slow(meter, tracer, 0.5)
    content_type, families = _families(reader, OPENMETRICS)
    assert content_type.startswith("application/openmetrics-text")
    buckets = {
        s.labels["le"]: s for s in families["ml_train_step_duration_seconds"].samples if s.name.endswith("_bucket")
    }
    assert buckets["0.1"].value == 1 and buckets["1.0"].value == 2 and buckets["+Inf"].value == 2
    assert buckets["0.1"].exemplar is None  # recorded outside any span
    exemplar = buckets["1.0"].exemplar
    assert exemplar.labels == {
        "trace_id": format(span.get_span_context().trace_id, "032x"),
        "span_id": format(span.get_span_context().span_id, "016x"),
    }
    assert exemplar.value == 0.5
    assert buckets["1.0"].labels["service_name"] == "svc"

    content_type, families = _families(reader, None)
    assert content_type.startswith("text/plain")
    samples = families["ml_train_step_duration_seconds"].samples
    assert all(s.exemplar is None for s in samples)
    assert {s.labels["le"]: s.value for s in samples if s.name.endswith("_bucket")} == {"0.1": 1, "1.0": 2, "+Inf": 2}


@pytest.mark.parametrize("accept", [None, OPENMETRICS], ids=["text", "openmetrics"])
def test_one_name_from_several_scopes_keeps_each_points_own_labels(accept: str | None) -> None:
    """Keras's ``ml.train.loss`` beside tf.summary's (other attribute keys), and a program's own instrument.

    Upstream's Prometheus collector renders every point of a name under the
    first scope's label names, shifting the values of the others (seen on
    every Keras fit with the TensorBoard callback); each point keeps its own.
    """
    reader = OtelMLPrometheusMetricReader(port=0, slow_steps=SlowStepBuffer(8))
    provider = MeterProvider(metric_readers=[reader], resource=Resource.create({"service.name": "svc"}))
    tracer = TracerProvider().get_tracer("t")
    try:
        keras, summary, own = (provider.get_meter(scope) for scope in ("otel_ml.keras", "otel_ml.tf_summary", "app"))
        keras.create_gauge("ml.train.loss").set(
            1.5, {"ml.run.name": "sequential", "ml.phase": "train", "ml.model.name": "m"}
        )
        summary.create_gauge("ml.train.loss").set(2.5, {"ml.run.name": "logs/fit/train", "ml.phase": "train"})
        own.create_gauge("ml.train.loss").set(3.5, {"team": "a"})
        histograms = [
            meter.create_histogram("ml.train.step.duration", unit="s", explicit_bucket_boundaries_advisory=[0.1, 1.0])
            for meter in (keras, own)
        ]
        with tracer.start_as_current_span("slow") as span:
            histograms[0].record(0.5, {"ml.run.name": "r"})
        histograms[1].record(0.05, {"job": "j", "ml.run.name": "r"})
        _, families = _families(reader, accept)
    finally:
        provider.shutdown()
    shared = {"service_name": "svc", "otel_scope_version": "", "otel_scope_schema_url": ""}
    losses = {s.labels["otel_scope_name"]: s for s in families["ml_train_loss"].samples}
    assert {scope: s.value for scope, s in losses.items()} == {
        "otel_ml.keras": 1.5,
        "otel_ml.tf_summary": 2.5,
        "app": 3.5,
    }
    labels = {
        scope: {k: v for k, v in s.labels.items() if k not in shared and k != "service_instance_id"}
        for scope, s in losses.items()
    }
    assert labels == {
        "otel_ml.keras": {
            "otel_scope_name": "otel_ml.keras",
            "ml_run_name": "sequential",
            "ml_phase": "train",
            "ml_model_name": "m",
        },
        "otel_ml.tf_summary": {
            "otel_scope_name": "otel_ml.tf_summary",
            "ml_run_name": "logs/fit/train",
            "ml_phase": "train",
        },
        "app": {"otel_scope_name": "app", "team": "a"},
    }
    assert all(s.labels.items() >= shared.items() for s in losses.values())
    buckets = [s for s in families["ml_train_step_duration_seconds"].samples if s.name.endswith("_bucket")]
    by_scope = {
        scope: {s.labels["le"]: s.value for s in buckets if s.labels["otel_scope_name"] == scope}
        for scope in ("otel_ml.keras", "app")
    }
    assert by_scope == {"otel_ml.keras": {"0.1": 0, "1.0": 1, "+Inf": 1}, "app": {"0.1": 1, "1.0": 1, "+Inf": 1}}
    assert {s.labels.get("job", "") for s in buckets if s.labels["otel_scope_name"] == "app"} == {"j"}
    assert all(
        "job" not in s.labels or s.labels["job"] == ""
        for s in buckets
        if s.labels["otel_scope_name"] == "otel_ml.keras"
    )
    exemplars = [s.exemplar for s in buckets if s.exemplar is not None]
    if accept:
        assert [e.labels["trace_id"] for e in exemplars] == [format(span.get_span_context().trace_id, "032x")]
    else:
        assert exemplars == []


def test_no_exemplar_at_all_renders_plain_buckets(endpoint) -> None:
    reader, meter, _ = endpoint
    meter.create_counter("ml.train.steps", unit="{step}").add(3)
    _, families = _families(reader, OPENMETRICS)
    (sample,) = [s for s in families["ml_train_steps"].samples if s.name == "ml_train_steps_total"]
    assert sample.value == 3 and sample.exemplar is None


def test_an_exemplar_survives_later_scrapes_until_a_newer_one_replaces_it(endpoint) -> None:
    reader, meter, tracer = endpoint
    histogram, first = _record_slow(meter, tracer, 0.5)

    def exemplar_span() -> str | None:
        _, families = _families(reader, OPENMETRICS)
        sample = next(s for s in families["ml_train_step_duration_seconds"].samples if s.labels.get("le") == "1.0")
        return sample.exemplar.labels["span_id"] if sample.exemplar else None

    first_id = format(first.get_span_context().span_id, "016x")
    assert exemplar_span() == first_id  # a curl...
    assert exemplar_span() == first_id  # ...does not steal it from the next scrape
    with tracer.start_as_current_span("keras.train_step") as second:
        histogram.record(0.7, {"ml.run.name": "r"})
    time.sleep(_server.CACHE_SECONDS)  # scrapes within a second share one rendering
    assert exemplar_span() == format(second.get_span_context().span_id, "016x")


def test_label_values_are_escaped_and_round_trip(endpoint) -> None:
    reader, meter, _ = endpoint
    tricky = 'run "α"\\path\nline2 — 日本'  # noqa: RUF001 - non-ASCII on purpose
    meter.create_counter("ml.train.steps", unit="{step}").add(5, {"ml.run.name": tricky})
    for accept in (OPENMETRICS, None):
        _, families = _families(reader, accept)
        (sample,) = [s for s in families["ml_train_steps"].samples if s.name == "ml_train_steps_total"]
        assert sample.labels["ml_run_name"] == tricky
        assert sample.value == 5


def test_nan_and_inf_values_are_exposed_as_prometheus_expects() -> None:
    collector = ExemplarCollector()
    points = [
        NumberDataPoint({"k": name}, 0, 0, value)
        for name, value in (("nan", math.nan), ("pinf", math.inf), ("ninf", -math.inf))
    ]
    metric = Metric("ml.train.loss", "", "", Gauge(points))
    data = MetricsData(
        [ResourceMetrics(Resource.create({}), [ScopeMetrics(InstrumentationScope("t"), [metric], "")], "")]
    )
    collector.add_metrics_data(data)
    (family,) = [f for f in collector.collect() if f.name == "ml_train_loss"]
    from prometheus_client import CollectorRegistry
    from prometheus_client.exposition import generate_latest
    from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

    class Fixed:
        def collect(self):  # type: ignore[no-untyped-def]
            return [family]

    registry = CollectorRegistry()
    registry.register(Fixed())
    text = generate_latest(registry).decode()
    assert [line.rsplit(" ", 1)[1] for line in text.splitlines() if not line.startswith("#")] == ["NaN", "+Inf", "-Inf"]
    for body, parse in ((text, parse_text), (generate_openmetrics(registry).decode(), parse_openmetrics)):
        parsed = {s.labels["k"]: s.value for f in parse(body) for s in f.samples}
        assert math.isnan(parsed["nan"]) and parsed["pinf"] == math.inf and parsed["ninf"] == -math.inf


def test_binds_loopback_by_default_and_honours_the_environment(monkeypatch) -> None:
    reader = OtelMLPrometheusMetricReader(port=0)
    try:
        assert reader.server.host == "127.0.0.1"
    finally:
        reader.shutdown()
    port = _net.free_port()
    monkeypatch.setenv("OTEL_EXPORTER_PROMETHEUS_PORT", str(port))
    monkeypatch.setenv("OTEL_EXPORTER_PROMETHEUS_HOST", "127.0.0.2")
    reader = OtelMLPrometheusMetricReader()
    try:
        assert reader.url == f"http://127.0.0.2:{port}/metrics"
        assert _net.get(reader.url)[0] == 200
    finally:
        reader.shutdown()


def test_a_taken_port_is_one_log_line_and_nothing_breaks(caplog) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with caplog.at_level(logging.ERROR, logger="otel_ml"):
            reader = OtelMLPrometheusMetricReader(port=port)
        provider = MeterProvider(metric_readers=[reader])
        provider.get_meter("t").create_counter("c").add(1)
        provider.shutdown()
    (record,) = caplog.records
    assert f"cannot serve /metrics on 127.0.0.1:{port}" in record.getMessage()
    assert "OTEL_EXPORTER_PROMETHEUS_PORT" in record.getMessage()


def test_bad_port_argument_and_env(monkeypatch, caplog) -> None:
    with pytest.raises(ValueError, match="port=70000 is invalid"):
        OtelMLPrometheusMetricReader(port=70000)
    monkeypatch.setenv("OTEL_EXPORTER_PROMETHEUS_PORT", "ninety")
    with caplog.at_level(logging.ERROR):
        reader = OtelMLPrometheusMetricReader(start_server=False)
    assert reader.server.port == 9464
    assert "OTEL_EXPORTER_PROMETHEUS_PORT='ninety' is invalid: expected a whole number >= 0" in caplog.text


def test_concurrent_scrapes_each_get_a_complete_result(endpoint) -> None:
    reader, meter, _ = endpoint
    counters = [meter.create_counter(f"c{i}") for i in range(20)]
    stop = threading.Event()

    def record() -> None:
        while not stop.is_set():
            for counter in counters:
                counter.add(1)

    writer = threading.Thread(target=record)
    writer.start()
    results: list[int] = []

    def scrape() -> None:
        for _ in range(10):
            _, families = _families(reader, OPENMETRICS)
            results.append(sum(1 for name in families if name.startswith("c")))

    try:
        scrapers = [threading.Thread(target=scrape) for _ in range(4)]
        for t in scrapers:
            t.start()
        for t in scrapers:
            t.join()
    finally:
        stop.set()
        writer.join()
    assert results == [20] * 40


def test_slow_steps_view_filters_by_trace_id_and_rejects_bad_queries(endpoint) -> None:
    reader, _, tracer = endpoint
    spans = []
    for step in range(3):
        span = tracer.start_span("keras.train_step", attributes={"ml.step": step, "ml.slow_threshold": 0.1})
        span.end()
        spans.append(span)
    tracer.start_span("keras.epoch").end()  # not a slow-step span: never kept
    base = reader.url.removesuffix("/metrics")
    everything = _net.get_json(base + "/slow-steps")
    assert [s["attributes"]["ml.step"] for s in everything["slow_steps"]] == [2, 1, 0]
    wanted = format(spans[1].get_span_context().trace_id, "032x")
    (one,) = _net.get_json(f"{base}/slow-steps?trace_id={wanted}")["slow_steps"]
    assert one["attributes"]["ml.step"] == 1
    status, _, body = _net.get(base + "/slow-steps?trace_id=xyz")
    assert status == 400 and "32 hexadecimal" in body
    assert _net.get(base + "/slow-steps?limit=0")[0] == 400
    assert len(_net.get_json(base + "/slow-steps?limit=2")["slow_steps"]) == 2
    assert _net.get(base + "/nope")[0] == 404


def test_slow_step_buffer_is_bounded() -> None:
    provider = TracerProvider()
    buffer = SlowStepBuffer(capacity=3)
    provider.add_span_processor(buffer)
    tracer = provider.get_tracer("t")
    for step in range(10):
        tracer.start_span("s", attributes={"ml.step": step, "ml.slow_threshold": 1.0}).end()
    assert [s["attributes"]["ml.step"] for s in buffer.spans()] == [9, 8, 7]


def test_training_series_names_are_the_documented_ones(endpoint) -> None:
    from otel_ml._training.instruments import TrainingInstruments as KerasInstruments

    reader, meter, _ = endpoint
    m = KerasInstruments.create(meter)
    attrs = {"ml.run.name": "r"}
    m.step_duration.record(0.01, attrs)
    m.epoch_duration.record(1.0, attrs)
    for counter in (m.steps, m.samples, m.epochs, m.anomalies):
        counter.add(1, attrs)
    for gauge in (m.loss, m.metric, m.learning_rate):
        gauge.set(0.5, attrs)
    _, body = _net.get(reader.url)[1:]
    names = {line.split("{")[0] for line in body.splitlines() if line and not line.startswith("#")}
    assert names - {"target_info"} == {
        "ml_train_step_duration_seconds_bucket",
        "ml_train_step_duration_seconds_sum",
        "ml_train_step_duration_seconds_count",
        "ml_train_epoch_duration_seconds_bucket",
        "ml_train_epoch_duration_seconds_sum",
        "ml_train_epoch_duration_seconds_count",
        "ml_train_steps_total",
        "ml_train_samples_total",
        "ml_train_epochs_total",
        "ml_train_anomalies_total",
        "ml_train_loss",
        "ml_train_metric",
        "ml_train_learning_rate",
    }


def _upstream_reader(registry):  # type: ignore[no-untyped-def]
    """opentelemetry-exporter-prometheus's own reader with the options otel_ml's endpoint uses, if it has them."""
    import inspect

    from opentelemetry.exporter.prometheus import PrometheusMetricReader

    from otel_ml.distro.endpoint._reader import WORKER_RESOURCE_ATTRIBUTES

    if "resource_attribute_filter" not in inspect.signature(PrometheusMetricReader).parameters:
        pytest.skip("this opentelemetry-exporter-prometheus predates resource_attribute_filter (0.66)")
    return PrometheusMetricReader(resource_attribute_filter=WORKER_RESOURCE_ATTRIBUTES.__contains__, registry=registry)


def test_the_translation_is_upstreams_byte_for_byte() -> None:
    """Every family otel_ml renders is what opentelemetry-exporter-prometheus renders, exemplars aside."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.exposition import generate_latest
    from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

    upstream_registry = CollectorRegistry(auto_describe=False)
    upstream = _upstream_reader(upstream_registry)
    ours = OtelMLPrometheusMetricReader(port=0, start_server=False)
    resource = Resource.create({"service.name": "svc", "ml.worker.index": 3, "host.name": "h"})
    provider = MeterProvider(metric_readers=[upstream, ours], resource=resource)
    tracer = TracerProvider().get_tracer("t")
    meter = provider.get_meter("otel_ml.keras", "1.2", schema_url="https://opentelemetry.io/schemas/1.30.0")
    other = provider.get_meter("other")
    histogram = meter.create_histogram("ml.train.step.duration", unit="s", explicit_bucket_boundaries_advisory=[0.1, 1])
    with tracer.start_as_current_span("step"):
        histogram.record(0.5, {"ml.run.name": "r", "ml.epoch": 2})
    histogram.record(7, {"ml.run.name": 'q"\\\n'})
    meter.create_counter("ml.train.steps", unit="{step}").add(3, {"ok": True})
    meter.create_counter("http.server.request.body.size", unit="By").add(10)
    meter.create_up_down_counter("ml.queue", unit="1").add(-2, {"k": [1, 2]})
    meter.create_gauge("gpu.temperature", unit="Cel", description="die").set(61.5, {"9gpu": "0"})
    other.create_counter("bytes.rate", unit="By/s").add(1)
    other.create_counter("ml.train.steps", unit="{step}").add(4, {"ok": False})
    meter.create_observable_gauge("ml.ratio", [lambda _: [Observation(0.25)]], unit="%")
    exponential = meter.create_histogram("ml.exp")
    exponential.record(1.0)

    def text(registry: CollectorRegistry) -> tuple[str, str]:
        return generate_latest(registry).decode(), generate_openmetrics(registry).decode()

    theirs_text, theirs_open = text(upstream_registry)
    ours_text, ours_open = text(ours.registry)
    assert ours_text == theirs_text
    assert "ml_train_step_duration_seconds_bucket" in ours_text and 'ml_worker_index="3"' in ours_text
    assert "host_name" not in ours_text.split("target_info", 1)[0]
    # OpenMetrics: the same lines once the exemplars (" # {trace_id=...} value time") are taken off.
    assert [line.split(" # ", 1)[0] for line in ours_open.splitlines()] == theirs_open.splitlines()
    assert ours_open.count("trace_id=") == 1
    provider.shutdown()
