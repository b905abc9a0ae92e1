"""The live page's server side: the bounded history, the JSON it serves, and its security headers.

The page as a person sees it is tested in Chromium (tests/test_page_browser.py).
"""

from __future__ import annotations

import http.client
import math
import threading
from html.parser import HTMLParser
from importlib import resources
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from otel_ml.distro.endpoint import OtelMLPrometheusMetricReader
from otel_ml.distro.endpoint._history import MetricHistory, _quantiles
from otel_ml.distro.endpoint._page import CSP, EMPTY_HINT, page_data
from otel_ml.distro.endpoint._slow_steps import SlowStepBuffer

STATIC = resources.files("otel_ml.distro.endpoint").joinpath("static")


def _gauge(name: str, value: float, **labels: str) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, "", labels=list(labels))
    family.add_metric(list(labels.values()), value)
    return family


def test_the_history_is_bounded_in_samples_series_and_bytes() -> None:
    history = MetricHistory(interval=1.0, capacity=10, max_series=5)
    for tick in range(25):  # 2.5 times round the ring
        families = [_gauge(f"ml_g{i}", tick * 100 + i) for i in range(8)]  # 8 series, 5 kept
        families.append(_gauge("process_other", 1.0))  # not otel_ml's: never kept
        history.record(families, now=1000.0 + tick)
    times, series = history.snapshot()
    assert times == [1015.0 + i for i in range(10)]  # the last 10 samples, oldest first
    assert sorted(name for name, _ in series) == ["ml_g0", "ml_g1", "ml_g2", "ml_g3", "ml_g4"]
    assert series[("ml_g3", ())][1][0] == [(15 + i) * 100 + 3 for i in range(10)]
    assert history.dropped_series == 3 * 25
    assert history.nbytes() == (5 + 1) * 10 * 8 <= MetricHistory.max_bytes(10, 5)
    # The stated bound at the defaults (one hour at 5 s, 256 series, four numbers a histogram sample).
    assert MetricHistory.max_bytes() == (256 * 4 + 1) * 720 * 8 == 5_904_000


def test_a_sweep_of_more_runs_than_series_kept_shows_the_current_run_not_the_first_ones() -> None:
    """The SDK exports a finished trial's cumulative series forever: kept first-come, they hid every later trial."""
    history = MetricHistory(interval=5.0, capacity=30, max_series=11)
    now = 0.0
    for trial in range(10):  # each trial a new Keras model name, 3 samples; a GPU gauge steady throughout
        for step in range(1, 4):
            now += 5.0
            families: list[Any] = [_gauge("hw_gpu_utilization", 0.9, hw_name="gpu0")]
            for done in range(trial + 1):  # the SDK keeps exporting every trial's counter
                family = CounterMetricFamily("ml_train_samples", "", labels=["ml_model_name"])
                family.add_metric([f"sequential_{done}"], 32.0 * (step if done == trial else 3))
                families.append(family)
                families.append(_gauge("ml_train_learning_rate", 0.001, ml_model_name=f"sequential_{done}"))
            history.record(families, now=now)
    kept = {dict(labels).get("ml_model_name", "gpu") for _, labels in history.snapshot()[1]}
    # The running trial (its constant learning rate too: its counter moves) and the GPU gauge stay, the older
    # finished trials gave their places up (idle for EVICT_IDLE_SAMPLES samples, all of a trial's series at once).
    assert kept == {"gpu", "sequential_9", "sequential_8", "sequential_7", "sequential_6", "sequential_5"}
    series = history.snapshot()[1][("ml_train_samples", (("ml_model_name", "sequential_9"),))][1][0]
    assert series[-3:] == [32.0, 64.0, 96.0]
    assert len(history.snapshot()[1]) == 11
    assert history.nbytes() <= MetricHistory.max_bytes(30, 6)


def test_an_idle_model_with_more_series_than_kept_keeps_the_same_ones_whole() -> None:
    """A 1,000-class ModelQuality has 4,000 series: idle, they must not take each other's places every sample."""
    history = MetricHistory(interval=5.0, capacity=20, max_series=256)
    family = CounterMetricFamily("ml_model_predictions", "", labels=["ml_model_name", "ml_prediction_label"])
    for label in range(4000):
        family.add_metric(["resnet", str(label)], 3.0)
    for tick in range(40):  # twice round the ring, idle for longer than EVICT_IDLE_SAMPLES
        history.record([family], now=5.0 * tick)
    series = history.snapshot()[1]
    assert {dict(labels)["ml_prediction_label"] for _, labels in series} == {str(label) for label in range(256)}
    assert all(rings[0] == [3.0] * 20 for _, rings in series.values())  # no ring made anew


def test_histogram_bounds_take_four_numbers_and_stay_in_the_bound() -> None:
    history = MetricHistory(interval=1.0, capacity=4, max_series=3)
    for tick in range(6):
        for name in ("ml_h0", "ml_h1", "ml_h2", "ml_h3"):
            family = HistogramMetricFamily(name, "", labels=[])
            family.add_metric([], buckets=[("1.0", tick), ("2.0", 3 * tick), ("+Inf", 4 * tick)], sum_value=0.0)
            history.record([family], now=float(tick))
    assert history.nbytes() == (3 * 4 + 1) * 4 * 8 == MetricHistory.max_bytes(4, 3)


def test_quantiles_follow_histogram_quantile_over_the_interval() -> None:
    before = [(1.0, 10.0), (2.0, 10.0), (math.inf, 10.0)]  # 10 old observations, all below 1
    after = [(1.0, 12.0), (2.0, 16.0), (math.inf, 18.0)]  # 8 new: 2 <= 1, 4 in (1, 2], 2 above 2
    p50, p95, p99 = _quantiles(before, after)
    assert p50 == 1.0 + (2.0 - 1.0) * (4.0 - 2.0) / (6.0 - 2.0)  # rank 4 falls in (1, 2]
    assert p95 == p99 == 2.0  # in +Inf: the highest finite bound, as Prometheus answers
    assert all(math.isnan(q) for q in _quantiles(after, after))  # nothing new: a gap, not a zero


def test_the_page_data_from_a_real_sdk_collection() -> None:
    reader = OtelMLPrometheusMetricReader(port=0, start_server=False)
    provider = MeterProvider(
        metric_readers=[reader],
        views=[
            View(instrument_name="ml.train.step.duration", aggregation=ExplicitBucketHistogramAggregation([0.1, 1]))
        ],
    )
    try:
        meter = provider.get_meter("otel_ml.keras")
        run = {"ml.model.name": "m", "ml.run.name": "r"}
        loss = meter.create_gauge("ml.train.loss")
        steps = meter.create_counter("ml.train.steps")
        samples = meter.create_counter("ml.train.samples")
        anomalies = meter.create_counter("ml.train.anomalies")
        duration = meter.create_histogram("ml.train.step.duration", unit="s")
        history = MetricHistory(interval=5.0, capacity=6)
        history.record(reader.registry.collect(), now=100.0)  # nothing recorded yet: an empty sample
        for tick, value in enumerate([0.9, 0.5, 0.25], start=1):
            loss.set(value, {**run, "ml.phase": "train"})
            steps.add(10, run)
            samples.add(320, run)
            for d in (0.05,) * 9 + (0.5,):
                duration.record(d, run)
            if tick == 2:
                anomalies.add(2, {**run, "ml.anomaly.kind": "nan_loss"})
            history.record(reader.registry.collect(), now=100.0 + 5 * tick)
        history.record(reader.registry.collect(), now=130.0)  # a pause: nothing new for 15 s
        data = page_data(history, SlowStepBuffer(4), now=131.0)
    finally:
        provider.shutdown()
    assert data["t"] == [100.0, 105.0, 110.0, 115.0, 130.0] and data["points"] == 5 and data["empty"] is None
    [training] = data["sections"]
    [panel] = training["panels"]
    assert panel["title"] == "model m · run r"
    charts = {chart["title"]: chart for chart in panel["charts"]}
    assert charts["Loss"]["series"] == [{"label": "train", "values": [None, 0.9, 0.5, 0.25, 0.25]}]
    assert charts["Loss"]["marks"] == [{"t": 110.0, "kind": "nan_loss", "count": 2.0}]
    assert charts["Samples per second"]["series"][0]["values"] == [None, None, 64.0, 64.0, 0.0]
    [p50, p95] = charts["Step time (s)"]["series"]
    assert p50["values"][1:4] == [0.1 * 5.0 / 9.0] * 3  # rank 5 of 10, in (0, 0.1] which holds 9
    assert p95["values"][1:4] == [0.1 + 0.9 * 0.5] * 3  # rank 9.5, in (0.1, 1] which holds the 10th
    assert p50["values"][4] is None  # the pause: no steps, a gap
    assert panel["facts"] == [["steps", "30"], ["last step", "16 s ago"], ["samples", "960"]]


def test_an_empty_process_says_what_to_turn_on() -> None:
    data = page_data(MetricHistory(capacity=3), SlowStepBuffer(4))
    assert data["sections"] == [] and data["empty"] == EMPTY_HINT and data["slow_steps"] == []


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, Any]]] = []
        self.script_text = ""
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.script_text += data


def _request(port: int, path: str, host: str | None = None, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest(method, path, skip_host=True)
        conn.putheader("Host", host or f"127.0.0.1:{port}")
        conn.endheaders()
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


@pytest.fixture
def served() -> Any:
    reader = OtelMLPrometheusMetricReader(host="127.0.0.1", port=0, slow_steps=SlowStepBuffer(4))
    provider = MeterProvider(metric_readers=[reader])
    yield reader
    provider.shutdown()


def test_the_page_is_served_with_a_strict_csp_and_no_inline_script(served: Any) -> None:
    port = served.server.port
    status, headers, body = _request(port, "/")
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    assert headers["Content-Security-Policy"] == CSP
    assert "script-src 'self';" in CSP and "unsafe" not in CSP and "default-src 'none'" in CSP
    assert headers["X-Content-Type-Options"] == "nosniff" and headers["X-Frame-Options"] == "DENY"
    parser = _Tags()
    parser.feed(body.decode())
    scripts = [attrs for tag, attrs in parser.tags if tag == "script"]
    assert [s["src"] for s in scripts] == ["page/static/uPlot.iife.min.js", "page/static/page.js"]
    assert parser.script_text.strip() == ""  # no inline script
    for tag, attrs in parser.tags:  # no handlers, no inline style, nothing from elsewhere, no form or input
        assert tag not in ("form", "input", "iframe", "style")
        assert not [name for name in attrs if name.startswith("on") or name in ("style", "id")], (tag, attrs)
        for name in ("src", "href"):
            assert "//" not in (attrs.get(name) or ""), (tag, attrs)
    for name, kind in [
        ("page.js", "text/javascript"),
        ("uPlot.iife.min.js", "text/javascript"),
        ("page.css", "text/css"),
    ]:
        status, headers, body = _request(port, "/page/static/" + name)
        assert status == 200 and headers["Content-Type"].startswith(kind) and body == STATIC.joinpath(name).read_bytes()
    assert _request(port, "/page/static/../_page.py")[0] == 404
    assert _request(port, "/page/static/page.html")[0] == 404
    status, headers, body = _request(port, "/page/data", method="HEAD")
    assert status == 200 and body == b""


def test_a_foreign_host_is_refused(served: Any) -> None:
    port = served.server.port
    for path in ("/", "/page/data", "/page/static/page.js"):
        status, _, body = _request(port, path, host=f"rebind.example:{port}")
        assert status == 403 and body.startswith(b"host not allowed")  # the endpoint's own check, for every path
    assert _request(port, "/page/data", host=f"localhost:{port}")[0] == 200


def test_the_sampler_feeds_the_history_at_its_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_ML_PAGE_INTERVAL", "0.05")
    monkeypatch.setenv("OTEL_ML_PAGE_POINTS", "7")
    reader = OtelMLPrometheusMetricReader(host="127.0.0.1", port=0, slow_steps=SlowStepBuffer(4))
    provider = MeterProvider(metric_readers=[reader])
    try:
        provider.get_meter("otel_ml.keras").create_gauge("ml.train.loss").set(0.5, {"ml.run.name": "r"})
        assert reader.history is not None and reader.page_url == reader.url.removesuffix("metrics")
        done = threading.Event()
        for _ in range(200):
            if reader.history.snapshot()[0].__len__() == 7:
                done.set()
                break
            done.wait(0.05)
        done.wait(0.4)  # eight more samples: the ring has gone round since the value was set
        times, series = reader.history.snapshot()
        [loss] = [rings for (name, labels), (_, rings) in series.items() if name == "ml_train_loss"]
        assert len(times) == 7 and loss[0] == [0.5] * 7
    finally:
        provider.shutdown()
    assert not [t for t in threading.enumerate() if t.name == "otel_ml-page-history"]  # stopped with the reader


def test_page_interval_zero_turns_the_page_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_ML_PAGE_INTERVAL", "0")
    reader = OtelMLPrometheusMetricReader(host="127.0.0.1", port=0, slow_steps=SlowStepBuffer(4))
    provider = MeterProvider(metric_readers=[reader])
    try:
        assert reader.history is None and reader.page_url is None
        assert not [t for t in threading.enumerate() if t.name == "otel_ml-page-history"]
        status, _, body = _request(reader.server.port, "/")
        assert status == 200 and body.startswith(b"otel_ml endpoint: /metrics")
        assert _request(reader.server.port, "/page/data")[0] == 404
    finally:
        provider.shutdown()


def test_uplot_ships_with_its_licence() -> None:
    licence = STATIC.joinpath("LICENSE.uPlot").read_text()
    assert "The MIT License" in licence and "Leon Sorokin" in licence
    script = STATIC.joinpath("uPlot.iife.min.js").read_text()
    assert script.startswith("/*! https://github.com/leeoniya/uPlot (v1.6.32) */")
    assert len(script) < 60_000


def test_inference_panels_from_a_real_sdk_collection() -> None:
    reader = OtelMLPrometheusMetricReader(port=0, start_server=False)
    provider = MeterProvider(
        metric_readers=[reader],
        views=[View(instrument_name="ml.inference.*", aggregation=ExplicitBucketHistogramAggregation([0.01, 0.1]))],
    )
    try:
        meter = provider.get_meter("otel_ml.paddle")
        model = {"ml.model.name": "resnet", "ml.model.version": "3"}
        duration = meter.create_histogram("ml.inference.duration", unit="s")
        queue = meter.create_histogram("ml.inference.queue.duration", unit="s")
        outcomes = meter.create_counter("ml.model.outcomes")
        history = MetricHistory(interval=10.0, capacity=8)
        history.record(reader.registry.collect(), now=0.0)
        for tick in (1, 2):
            for _ in range(18):
                duration.record(0.005, model)
            duration.record(0.05, {**model, "error.type": "ValueError"})
            duration.record(0.5, model)
            for _ in range(10):
                queue.record(0.05, model)
            outcomes.add(3, {**model, "ml.prediction.correct": True})
            outcomes.add(1, {**model, "ml.prediction.correct": False})
            history.record(reader.registry.collect(), now=10.0 * tick)
        data = page_data(history, SlowStepBuffer(4), now=21.0)
    finally:
        provider.shutdown()
    [section] = data["sections"]
    assert section["name"] == "Inference" and data["slow_steps"] == []
    [panel] = section["panels"]
    assert panel["title"] == "model resnet · version 3"
    charts = {chart["title"]: [(s["label"], s["values"]) for s in chart["series"]] for chart in panel["charts"]}
    # Each series' rate from its second sample on, then summed (Prometheus's sum(rate())): 20 requests
    # every 10 s, one of them an error; 3 of 4 outcomes correct. Nothing before a series' second sample.
    assert charts["Requests per second"] == [("per second", [None, None, 2.0])]
    assert charts["Errors per second"] == [("errors", [None, None, 0.1])]
    assert charts["Accuracy"] == [("accuracy", [None, None, pytest.approx(0.3 / 0.4)])]
    # Latency of the answered requests (the error's series is left out): rank 9.5 of 19, 18 in (0, 0.01].
    assert charts["Latency (s)"][0] == ("p50", [None, 0.01 * 9.5 / 18.0, 0.01 * 9.5 / 18.0])
    p50, p99 = pytest.approx(0.01 + 0.09 * 5.0 / 10.0), pytest.approx(0.01 + 0.09 * 9.9 / 10.0)  # all in (0.01, 0.1]
    assert charts["Queue time (s)"] == [("p50", [None, p50, p50]), ("p99", [None, p99, p99])]


def test_a_pause_longer_than_the_history_still_ages() -> None:
    history = MetricHistory(interval=1.0, capacity=4)

    def steps(value: float) -> list[Any]:
        family = CounterMetricFamily("ml_train_steps", "", labels=["ml_model_name", "ml_run_name"])
        family.add_metric(["m", "r"], value)
        return [family, _gauge("ml_train_loss", 0.5, ml_model_name="m", ml_run_name="r", ml_phase="train")]

    history.record(steps(5.0), now=0.0)
    history.record(steps(9.0), now=1.0)  # the last step
    for t in range(2, 30):  # the ring (4 samples) forgets the rise long before the page asks
        history.record(steps(9.0), now=float(t))
    [panel] = page_data(history, SlowStepBuffer(4), now=61.0)["sections"][0]["panels"]
    assert panel["facts"] == [["steps", "9"], ["last step", "60 s ago"]]


def test_the_memory_bound_holds_as_measured() -> None:
    """The defaults' stated bound, 7 MB, measured: 256 histogram series (13 buckets) fill every ring."""
    import tracemalloc

    def families(t: int) -> list[Any]:
        out = []
        for i in range(300):  # 44 more than are kept
            family = HistogramMetricFamily(
                "ml_train_step_duration_seconds", "", labels=["ml_run_name", "ml_model_name"]
            )
            bounds = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5)
            buckets = [(str(b), t * b) for b in bounds] + [("+Inf", t * 100.0)]
            family.add_metric([f"run-{i}", f"a-model-with-a-rather-long-name-{i}"], buckets=buckets, sum_value=1.0)
            out.append(family)
        return out

    prepared = [families(t) for t in range(3)]  # the rings are allocated whole: three samples fill the memory
    tracemalloc.start()
    try:
        history = MetricHistory()
        for t, sample in enumerate(prepared):
            history.record(sample, now=float(t))
        used, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert history.nbytes() == MetricHistory.max_bytes() == 5_904_000  # the rings
    assert history.dropped_series == 3 * 44
    assert used <= 7_000_000, used  # rings and bookkeeping (keys, previous buckets)


@pytest.mark.internal_errors_expected
def test_a_failing_collection_is_reported_and_leaves_a_gap() -> None:
    from otel_ml._core import guard
    from otel_ml.distro.endpoint._history import HistorySampler

    calls: Any = iter([RuntimeError("boom"), [_gauge("ml_train_loss", 0.5)]])

    def collect() -> list[Any]:
        result = next(calls)
        if isinstance(result, Exception):
            raise result
        return list(result)

    history = MetricHistory(interval=1.0, capacity=4)
    sampler = HistorySampler(collect, history)
    with guard.recording() as errors:
        sampler.sample()  # fails: reported, nothing recorded
        sampler.sample()
    assert [(site, str(exc)) for site, exc in errors] == [("the live page's history", "boom")]
    times, series = history.snapshot()
    assert len(times) == 1 and series[("ml_train_loss", ())][1][0] == [0.5]
