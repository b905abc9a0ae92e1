"""otel_ml.serving: queue time apart from compute, and model quality counters, read back exactly."""

from __future__ import annotations

import gc
import os
import queue
import subprocess
import sys
import threading
import time

import pytest

from otel_ml._core import semconv as sc
from otel_ml.serving import ModelQuality, QueueTimer


def _by(telemetry, name: str, *keys: str) -> dict[tuple[object, ...], float]:  # type: ignore[no-untyped-def]
    """Point values (``value`` or ``count``) of ``name`` keyed by the given attributes."""
    found: dict[tuple[object, ...], float] = {}
    for point in telemetry.points(name):
        attrs = dict(point.attributes)
        found[tuple(attrs.get(k) for k in keys)] = getattr(point, "value", None) or getattr(point, "count", 0)
    return found


def test_queue_wait_is_timed_and_waiting_requests_are_visible(telemetry) -> None:  # type: ignore[no-untyped-def]
    waits = QueueTimer("iris", version=2, meter_provider=telemetry.meter_provider)
    free: queue.Queue[str] = queue.Queue()
    waiting_started = threading.Event()

    def request() -> None:
        with waits.waiting():
            waiting_started.set()
            free.get(timeout=10)

    thread = threading.Thread(target=request)
    thread.start()
    assert waiting_started.wait(10)
    key = ("iris", "2")
    assert _by(telemetry, sc.METRIC_INFERENCE_QUEUE_WAITING, sc.ML_MODEL_NAME, sc.ML_MODEL_VERSION) == {key: 1}
    time.sleep(0.05)
    free.put("predictor")
    thread.join(10)
    [point] = telemetry.points(sc.METRIC_INFERENCE_QUEUE_DURATION)
    assert dict(point.attributes) == {sc.ML_MODEL_NAME: "iris", sc.ML_MODEL_VERSION: "2"}
    assert point.count == 1 and 0.05 <= point.sum < 10
    [waiting] = telemetry.points(sc.METRIC_INFERENCE_QUEUE_WAITING)
    assert waiting.value == 0


def test_a_wait_that_raises_passes_the_exception_and_is_still_counted(telemetry) -> None:  # type: ignore[no-untyped-def]
    waits = QueueTimer("iris", meter_provider=telemetry.meter_provider)
    with pytest.raises(queue.Empty), waits.waiting():
        queue.Queue().get(timeout=0.01)
    [point] = telemetry.points(sc.METRIC_INFERENCE_QUEUE_DURATION)
    assert point.count == 1
    assert [p.value for p in telemetry.points(sc.METRIC_INFERENCE_QUEUE_WAITING)] == [0]


def test_predictions_and_outcomes_give_accuracy_recall_and_distribution(telemetry) -> None:  # type: ignore[no-untyped-def]
    quality = ModelQuality("iris", classes=["setosa", "versicolor"], meter_provider=telemetry.meter_provider)
    for i, label in enumerate(["setosa", "setosa", "versicolor", "virginica"]):
        quality.predicted(label, request_id=f"r{i}")
    assert quality.observed("setosa", request_id="r0") is True  # right
    assert quality.observed("versicolor", request_id="r1") is True  # wrong
    assert quality.observed("versicolor", request_id="r1") is False  # already observed
    assert quality.observed("setosa", request_id="never") is False
    assert quality.observed("versicolor", predicted="versicolor") is True  # given directly
    predictions = _by(telemetry, sc.METRIC_MODEL_PREDICTIONS, sc.ML_PREDICTION_LABEL)
    assert predictions == {("setosa",): 2, ("versicolor",): 1, ("_OTHER",): 1}
    outcomes = _by(telemetry, sc.METRIC_MODEL_OUTCOMES, sc.ML_TRUTH_LABEL, sc.ML_PREDICTION_LABEL)
    # The whole confusion matrix (3 x 3 with _OTHER), every cell from 0.
    expected = {(t, p): 0 for t in ("setosa", "versicolor", "_OTHER") for p in ("setosa", "versicolor", "_OTHER")}
    expected |= {("setosa", "setosa"): 1, ("versicolor", "setosa"): 1, ("versicolor", "versicolor"): 1}
    assert outcomes == expected
    correct = {
        (p.attributes[sc.ML_TRUTH_LABEL], p.attributes[sc.ML_PREDICTION_LABEL]): p.attributes[sc.ML_PREDICTION_CORRECT]
        for p in telemetry.points(sc.METRIC_MODEL_OUTCOMES)
    }
    assert all(flag is (t == p != "_OTHER") for (t, p), flag in correct.items())
    false_positives = _by(telemetry, sc.METRIC_MODEL_FALSE_POSITIVES, sc.ML_PREDICTION_LABEL)
    assert false_positives == {("setosa",): 1, ("versicolor",): 0, ("_OTHER",): 0}
    names = {p.attributes[sc.ML_MODEL_NAME] for p in telemetry.points(sc.METRIC_MODEL_OUTCOMES)}
    assert names == {"iris"}  # and no request id in any attribute
    assert all("r0" not in map(str, p.attributes.values()) for p in telemetry.points(sc.METRIC_MODEL_PREDICTIONS))


def test_every_declared_series_exists_at_zero_before_the_first_prediction(telemetry) -> None:  # type: ignore[no-untyped-def]
    """increase() cannot see the first increment of a series that appears with it: all start at 0."""
    quality = ModelQuality("m", classes=["a", "b"], version=1, meter_provider=telemetry.meter_provider)
    assert _by(telemetry, sc.METRIC_MODEL_PREDICTIONS, sc.ML_PREDICTION_LABEL) == {("a",): 0, ("b",): 0, ("_OTHER",): 0}
    outcomes = telemetry.points(sc.METRIC_MODEL_OUTCOMES)
    assert len(outcomes) == 9 and {p.value for p in outcomes} == {0}
    assert {p.attributes[sc.ML_MODEL_VERSION] for p in outcomes} == {"1"}
    assert len(telemetry.points(sc.METRIC_MODEL_FALSE_POSITIVES)) == 3
    assert quality.label("a") == "a"  # (held: a collected helper is no longer read)


def test_a_feedback_token_counts_in_another_process_and_only_once(telemetry, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The token carries the predicted class: the process that counts the outcome need not have predicted."""
    script = (
        "import sys\n"
        "from otel_ml.serving import ModelQuality\n"
        "q = ModelQuality('m', classes=['cat', 'dog'], secret='s3cret')\n"
        "print(q.predicted('dog'), q.predicted('cat'))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120)
    dog_token, cat_token = proc.stdout.split()
    quality = ModelQuality("m", classes=["cat", "dog"], secret="s3cret", meter_provider=telemetry.meter_provider)
    assert quality.observed("cat", token=dog_token) is True  # wrong: predicted dog
    assert quality.observed("cat", token=dog_token) is False  # replayed
    assert quality.observed("cat", token=cat_token) is True  # right
    outcomes = _by(telemetry, sc.METRIC_MODEL_OUTCOMES, sc.ML_TRUTH_LABEL, sc.ML_PREDICTION_LABEL)
    assert {k: v for k, v in outcomes.items() if v} == {("cat", "dog"): 1, ("cat", "cat"): 1}
    # Another secret, another model or another class list does not accept it; nor does a forged or garbled one.
    for other in (
        ModelQuality("m", classes=["cat", "dog"], secret="other"),
        ModelQuality("m", classes=["cat", "dog"]),
        ModelQuality("m2", classes=["cat", "dog"], secret="s3cret"),
        ModelQuality("m", classes=["cat", "dog", "cow"], secret="s3cret"),
    ):
        assert other.observed("cat", token=cat_token) is False
    fresh = ModelQuality("m", classes=["cat", "dog"], secret="s3cret")
    flipped = cat_token[:5] + ("B" if cat_token[5] != "B" else "C") + cat_token[6:]
    for bad in (flipped, cat_token[:-1], "é" * 32, "=" * 32, "", 42):
        assert fresh.observed("cat", token=bad) is False  # type: ignore[arg-type]
    assert fresh.observed("cat", token=cat_token) is True  # a fresh process has not seen it used


def test_tokens_of_workers_forked_from_one_master_are_never_taken_for_replays(telemetry) -> None:  # type: ignore[no-untyped-def]
    """gunicorn --preload: the workers fork from a master that built the ModelQuality; their tokens are all genuine."""
    quality = ModelQuality("m", classes=["cat", "dog"], secret="s", meter_provider=telemetry.meter_provider)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the worker: one prediction, its token to the master
        try:
            os.write(write, quality.predicted("dog").encode())
        finally:
            os._exit(0)
    os.close(write)
    child_token = os.read(read, 100).decode()
    os.waitpid(pid, 0)
    own_token = quality.predicted("cat")
    assert quality.observed("cat", token=child_token) is True
    assert quality.observed("cat", token=own_token) is True  # not "used already"


def test_feedback_days_later_still_counts_and_memory_stays_bounded(telemetry) -> None:  # type: ignore[no-untyped-def]
    quality = ModelQuality("m", classes=[0, 1], max_pending=100, meter_provider=telemetry.meter_provider)
    first = quality.predicted(1)
    tokens = [quality.predicted(i % 2) for i in range(50_000)]  # far more than max_pending
    for token in tokens[:1000]:
        assert quality.observed(0, token=token) is True
    assert len(quality._used) == 100 and not quality._pending  # bounded: no per-prediction state
    assert quality.observed(1, token=first) is True  # 51,000 predictions later
    outcomes = _by(telemetry, sc.METRIC_MODEL_OUTCOMES, sc.ML_TRUTH_LABEL, sc.ML_PREDICTION_LABEL)
    assert outcomes[("0", "0")] == 500 and outcomes[("0", "1")] == 500 and outcomes[("1", "1")] == 1


def test_class_and_model_names_from_undecodable_directory_names_count_under_valid_labels(telemetry) -> None:  # type: ignore[no-untyped-def]
    """Class names are often a dataset's directory names: ``os.listdir`` gives b"caf\\xe9" as "caf\\udce9"."""
    classes = ["cat", os.fsdecode(b"caf\xe9"), 'say "hi"\nthere']
    quality = ModelQuality(os.fsdecode(b"model-\xff"), classes=classes, meter_provider=telemetry.meter_provider)
    assert quality.observed(classes[1], token=quality.predicted(classes[1]))  # was a UnicodeEncodeError
    assert quality.observed(classes[2], token=quality.predicted(classes[1]))
    predictions = _by(telemetry, sc.METRIC_MODEL_PREDICTIONS, sc.ML_MODEL_NAME, sc.ML_PREDICTION_LABEL)
    assert predictions == {
        ("model-\\xff", "cat"): 0,
        ("model-\\xff", "caf\\xe9"): 2,
        ("model-\\xff", 'say "hi"\nthere'): 0,
        ("model-\\xff", "_OTHER"): 0,
    }
    keys = (sc.ML_TRUTH_LABEL, sc.ML_PREDICTION_LABEL, sc.ML_PREDICTION_CORRECT)
    right = _by(telemetry, sc.METRIC_MODEL_OUTCOMES, *keys)
    assert {k: v for k, v in right.items() if v} == {
        ("caf\\xe9", "caf\\xe9", True): 1,
        ('say "hi"\nthere', "caf\\xe9", False): 1,
    }


def test_a_thousand_classes_and_long_labels_compared_whole(telemetry) -> None:  # type: ignore[no-untyped-def]
    imagenet = ModelQuality("resnet", classes=range(1000), meter_provider=telemetry.meter_provider)
    imagenet.observed(7, token=imagenet.predicted(7))
    imagenet.observed(7, token=imagenet.predicted(3))
    imagenet.observed(7, predicted=1234)  # undeclared: _OTHER
    # Beyond 20 classes: per-class true positives and false negatives, false positives apart; no matrix.
    outcomes = telemetry.points(sc.METRIC_MODEL_OUTCOMES)
    assert len(outcomes) == 2 * 1000 + 1  # an undeclared truth is never right: one series
    counted = {
        tuple(sorted((k, v) for k, v in p.attributes.items() if k != sc.ML_MODEL_NAME)): p.value
        for p in outcomes
        if p.value
    }
    assert counted == {
        ((sc.ML_PREDICTION_CORRECT, True), (sc.ML_PREDICTION_LABEL, "7"), (sc.ML_TRUTH_LABEL, "7")): 1,
        ((sc.ML_PREDICTION_CORRECT, False), (sc.ML_TRUTH_LABEL, "7")): 2,
    }
    false_positives = _by(telemetry, sc.METRIC_MODEL_FALSE_POSITIVES, sc.ML_MODEL_NAME, sc.ML_PREDICTION_LABEL)
    assert {k: v for k, v in false_positives.items() if v} == {("resnet", "3"): 1, ("resnet", "_OTHER"): 1}
    assert len(false_positives) == 1001
    # Two labels alike for their first 128 characters are two classes, rendered apart and within 128. (Its own
    # provider: the 2,001 outcome series above already reach the SDK's default limit of 2,000 per instrument.)
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    long_a, long_b = "x" * 130 + "a", "x" * 130 + "b"
    labels = ModelQuality("long", classes=[long_a, long_b], meter_provider=MeterProvider(metric_readers=[reader]))
    labels.observed(long_b, token=labels.predicted(long_a))
    data = reader.get_metrics_data()
    points = [
        p
        for rm in (data.resource_metrics if data else [])
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == sc.METRIC_MODEL_OUTCOMES
        for p in m.data.data_points
    ]
    [wrong] = [p for p in points if p.value]
    assert wrong.attributes[sc.ML_PREDICTION_CORRECT] is False
    assert wrong.attributes[sc.ML_TRUTH_LABEL] != wrong.attributes[sc.ML_PREDICTION_LABEL]
    assert {len(wrong.attributes[sc.ML_TRUTH_LABEL]), len(wrong.attributes[sc.ML_PREDICTION_LABEL])} == {128}
    assert labels.label(long_a) == wrong.attributes[sc.ML_PREDICTION_LABEL]


def test_pending_predictions_are_bounded_oldest_first(telemetry) -> None:  # type: ignore[no-untyped-def]
    quality = ModelQuality("m", classes=[0, 1], max_pending=2, meter_provider=telemetry.meter_provider)
    for i in range(3):
        quality.predicted(i % 2, request_id=i)
    assert quality.observed(0, request_id=0) is False  # forgotten: the oldest of three
    assert quality.observed(1, request_id=1) is True
    assert quality.observed(0, request_id=2) is True


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"classes": []}, "classes has 0 distinct labels: expected 1 to 1000"),
        ({"classes": range(1001)}, "classes has 1001 distinct labels: expected 1 to 1000"),
        ({"classes": ["a", "_OTHER"]}, "classes are invalid: two render alike, or one is '_OTHER'"),
        ({"classes": [0], "secret": b""}, "secret is invalid: expected a non-empty string or bytes"),
        ({"classes": [0], "max_pending": -1}, "max_pending=-1 is invalid: expected a whole number >= 0"),
        ({"classes": [0], "model_name": ""}, "model_name '' is invalid: expected a non-empty string of at most 128"),
        ({"classes": [0], "version": 1.5}, "version 1.5 is invalid: expected a non-empty string, a whole number"),
    ],
)
def test_bad_arguments_name_what_is_accepted(kwargs, message) -> None:  # type: ignore[no-untyped-def]
    kwargs.setdefault("model_name", "m")
    with pytest.raises(ValueError) as caught:
        ModelQuality(**kwargs)
    assert str(caught.value).startswith(message)
    with pytest.raises(ValueError, match="observed\\(\\) needs token="):
        ModelQuality("m", classes=[0]).observed(0)


@pytest.mark.parametrize(
    ("header", "stamp"),
    [
        ("X-Request-Start", lambda t: f"t={t:.3f}"),  # nginx: t=${msec}
        ("X-Request-Start", lambda t: str(int(t * 1e3))),  # Heroku's router: milliseconds
        ("X-Queue-Start", lambda t: f"t={int(t * 1e6)}"),  # Apache: t=%t, microseconds
        ("X-Request-Start", lambda t: str(int(t * 1e9))),  # nanoseconds
        ("X-Queue-Start", lambda t: f"{t:.6f}"),  # seconds, no prefix
    ],
)
def test_time_before_the_app_is_read_from_the_proxys_stamp(telemetry, header, stamp) -> None:  # type: ignore[no-untyped-def]
    from flask import Flask

    from otel_ml.serving import instrument_flask_app

    app = Flask("queued")
    app.add_url_rule("/predict", "predict", lambda: "ok", methods=["POST"])
    instrument_flask_app(app, meter_provider=telemetry.meter_provider, tracer_provider=telemetry.tracer_provider)
    client = app.test_client()
    before = time.time()
    assert client.post("/predict", headers={header: stamp(before - 0.25)}).status_code == 200
    after = time.time()
    [point] = telemetry.points(sc.METRIC_HTTP_SERVER_REQUEST_QUEUE_DURATION)
    assert point.count == 1
    # The stamp's own rounding (1 ms at most, either way), and the request's own time.
    assert 0.249 <= point.sum <= 0.251 + (after - before)
    assert dict(point.attributes) == {sc.HTTP_REQUEST_METHOD: "POST", sc.URL_SCHEME: "http"}
    assert client.post("/predict").status_code == 200  # no stamp: nothing recorded
    [point] = telemetry.points(sc.METRIC_HTTP_SERVER_REQUEST_QUEUE_DURATION)
    assert point.count == 1


def test_a_stamp_that_is_not_one_is_ignored_and_a_slightly_early_one_is_zero(telemetry) -> None:  # type: ignore[no-untyped-def]
    from flask import Flask

    from otel_ml.serving import instrument_flask_app

    app = Flask("queued")
    app.add_url_rule("/", "index", lambda: "ok")
    instrument_flask_app(app, meter_provider=telemetry.meter_provider)
    client = app.test_client()
    now = time.time()
    for bad in ("soon", "t=", "nan", "inf", "t=-5", "12", str(now + 10), str(now - 7200), "t=1e400", "\u00e9"):
        assert client.get("/", headers={"X-Request-Start": bad}).status_code == 200
    assert telemetry.points(sc.METRIC_HTTP_SERVER_REQUEST_QUEUE_DURATION) == []
    assert client.get("/", headers={"X-Request-Start": f"t={now + 0.5:.3f}"}).status_code == 200  # skew
    [point] = telemetry.points(sc.METRIC_HTTP_SERVER_REQUEST_QUEUE_DURATION)
    assert (point.count, point.sum) == (1, 0.0)
    [http] = telemetry.points(sc.METRIC_HTTP_SERVER_REQUEST_DURATION)
    assert http.count == 11  # every request still answered and counted


@pytest.mark.slow
def test_a_real_prometheus_sees_a_feedback_burst_whole_and_a_class_never_right_at_zero(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The documented queries on a real scrape: increase() counts the burst's first outcomes, recall keeps 0."""
    import re
    from pathlib import Path

    from opentelemetry.sdk.metrics import MeterProvider

    from otel_ml.distro.endpoint import OtelMLPrometheusMetricReader
    from tests import _net
    from tests._prometheus import prometheus, require_prometheus

    require_prometheus()
    reader = OtelMLPrometheusMetricReader(port=0)
    provider = MeterProvider(metric_readers=[reader])
    try:
        quality = ModelQuality("iris", classes=["a", "b", "c"], meter_provider=provider)
        with prometheus(tmp_path, [reader.url.removeprefix("http://").removesuffix("/metrics")]) as prom:
            # Scraped at 0 before any feedback: 16 outcome series (the 4 x 4 matrix with _OTHER).
            _net.wait_for(
                lambda: len(prom.query('ml_model_outcomes_total{ml_model_name="iris"}')) == 16, 30, "the zero series"
            )
            burst = [("a", "a")] * 10 + [("b", "b")] * 5 + [("b", "a")] * 5 + [("c", "b")] * 10  # (truth, predicted)
            for truth, guess in burst:
                assert quality.observed(truth, token=quality.predicted(guess)) is True

            def scraped_total() -> float | None:
                return prom.value('sum(ml_model_outcomes_total{ml_model_name="iris"})') == 30 or None

            _net.wait_for(scraped_total, 30, "Prometheus to scrape the burst")
            increase = prom.value('sum(increase(ml_model_outcomes_total{ml_model_name="iris"}[1h]))')
            # Every outcome is seen: a series created lazily, first scraped at its value already, would add 0
            # here. Above 30 only by increase()'s extrapolation to the window's end, which over a few seconds
            # of samples can be a quarter or more (38 was seen); ratios (below) are exact.
            assert increase is not None and 30 <= increase < 60
            doc = (Path(__file__).resolve().parents[1] / "docs" / "serving.md").read_text()
            recall_query = re.findall(r"```promql\n(.*?)\n", doc.split("## Model quality")[1])[0]
            recall = {r["metric"]["ml_truth_label"]: float(r["value"][1]) for r in prom.query(recall_query)}
            # "c", never right, is there at 0; _OTHER, with no outcome at all, has no recall (not 0/0).
            assert recall == {"a": 1.0, "b": 0.5, "c": 0.0}
    finally:
        provider.shutdown()


def test_waits_outside_a_sampled_span_are_batched_yet_exact_and_one_inside_keeps_its_exemplar(telemetry) -> None:  # type: ignore[no-untyped-def]
    waits = QueueTimer("iris", meter_provider=telemetry.meter_provider)
    for _ in range(300):  # no span: handed to the SDK in batches, every one before the collection
        with waits.waiting():
            pass
    tracer = telemetry.tracer_provider.get_tracer("test")
    with tracer.start_as_current_span("request") as span, waits.waiting():
        pass
    [point] = telemetry.points(sc.METRIC_INFERENCE_QUEUE_DURATION)
    assert point.count == 301
    assert [e.trace_id for e in point.exemplars] == [span.get_span_context().trace_id]  # only the sampled one's
    for _ in range(7):
        with waits.waiting():
            pass
    [point] = telemetry.points(sc.METRIC_INFERENCE_QUEUE_DURATION)
    assert point.count == 308


def test_waits_of_a_timer_dropped_before_the_collection_are_counted(telemetry) -> None:  # type: ignore[no-untyped-def]
    waits = QueueTimer("iris", meter_provider=telemetry.meter_provider)
    for _ in range(5):
        with waits.waiting():
            pass
    del waits
    gc.collect()
    [point] = telemetry.points(sc.METRIC_INFERENCE_QUEUE_DURATION)
    assert point.count == 5


def test_a_child_forked_while_another_thread_hands_waits_over_still_collects(telemetry) -> None:  # type: ignore[no-untyped-def]
    """A fork while a request thread is in ``Deferred.flush``: the child must not inherit its lock held (every
    collection of the child, its scrape, its periodic export and its exit's last export, would wait forever)."""
    waits = QueueTimer("iris", meter_provider=telemetry.meter_provider)
    for _ in range(3):
        with waits.waiting():
            pass
    deferred = waits._deferred
    deferred._lock.acquire()  # as held by another thread mid-flush at the moment of the fork
    try:
        pid = os.fork()
        if pid == 0:  # the child: its collection must end, with every wait counted
            code = 3
            try:
                done: list[float] = []
                collect = threading.Thread(
                    target=lambda: done.extend(p.count for p in telemetry.points(sc.METRIC_INFERENCE_QUEUE_DURATION)),
                    daemon=True,
                )
                collect.start()
                collect.join(10)
                code = 0 if done == [3] else 1 if collect.is_alive() else 2
            finally:
                os._exit(code)
    finally:
        deferred._lock.release()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0  # 1: the child's collection hung on the inherited lock
    [point] = telemetry.points(sc.METRIC_INFERENCE_QUEUE_DURATION)
    assert point.count == 3


def test_a_collection_while_the_interrupted_thread_holds_the_batch_goes_on_and_counts_it_next_time(telemetry) -> None:  # type: ignore[no-untyped-def]
    """A SIGTERM lands while the main thread (a gunicorn sync worker's request) is in ``Deferred.flush``: the
    handler's export runs on a helper thread and collects; it must not wait for ever for that flush (the main
    thread waits for the helper), and what was kept is counted at the next collection."""
    waits = QueueTimer("iris", meter_provider=telemetry.meter_provider)
    for _ in range(3):
        with waits.waiting():
            pass
    found: list[int] = []
    waits._deferred._lock.acquire()  # this thread, interrupted mid-flush
    try:
        collect = threading.Thread(
            target=lambda: found.extend(p.count for p in telemetry.points(sc.METRIC_INFERENCE_QUEUE_DURATION)),
            daemon=True,
        )
        collect.start()
        collect.join(10)
        assert not collect.is_alive()  # the collection went on without the batch held
    finally:
        waits._deferred._lock.release()
    assert found in ([], [1])  # the first wait reached the SDK at once; the two others were held
    [point] = telemetry.points(sc.METRIC_INFERENCE_QUEUE_DURATION)
    assert point.count == 3


def test_otel_ml_imported_inside_a_context_with_baggage_still_tells_a_sampled_span_apart() -> None:
    """The "no exemplar" context and the span key are built from an empty context, not whatever is current at
    import (with baggage current, the first key was the baggage's and every request raised inside our guard)."""
    import subprocess
    import sys

    code = (
        "from opentelemetry import baggage, context, trace\n"
        "context.attach(baggage.set_baggage('tenant', 'a'))\n"
        "from otel_ml._core.pending import NO_EXEMPLAR\n"
        "from otel_ml.serving._common import exemplar_possible\n"
        "assert len(list(NO_EXEMPLAR)) == 1, list(NO_EXEMPLAR)\n"
        "assert exemplar_possible(context.get_current()) is False\n"
        "span = trace.NonRecordingSpan(trace.SpanContext(1, 2, False, trace.TraceFlags(1)))\n"
        "assert exemplar_possible(trace.set_span_in_context(span)) is True\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.stdout.strip() == "ok", done.stderr[-2000:]
