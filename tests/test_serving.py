"""otel_ml.serving: queue time apart from compute, and model quality counters, read back exactly."""

from __future__ import annotations

import queue
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
    outcomes = _by(telemetry, sc.METRIC_MODEL_OUTCOMES, sc.ML_TRUTH_LABEL, sc.ML_PREDICTION_CORRECT)
    assert outcomes == {("setosa", True): 1, ("versicolor", False): 1, ("versicolor", True): 1}
    names = {p.attributes[sc.ML_MODEL_NAME] for p in telemetry.points(sc.METRIC_MODEL_OUTCOMES)}
    assert names == {"iris"}  # and no request id in any attribute
    assert all("r0" not in map(str, p.attributes.values()) for p in telemetry.points(sc.METRIC_MODEL_PREDICTIONS))


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
        ({"classes": []}, "classes has 0 distinct labels: expected 1 to 100"),
        ({"classes": range(101)}, "classes has 101 distinct labels: expected 1 to 100"),
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
    with pytest.raises(ValueError, match="observed\\(\\) needs request_id="):
        ModelQuality("m", classes=[0]).observed(0)
