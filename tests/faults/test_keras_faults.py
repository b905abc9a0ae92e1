"""Keras faults: odd but legal arguments and hostile parts around fit never cost the run's telemetry.

Each of our hooks does all it can independently of the others; what fails is
logged once and costs that job alone.
"""

from __future__ import annotations

import logging
from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf
from opentelemetry.sdk.trace import SpanProcessor

import otel_ml
from otel_ml._core import guard as _guard
from otel_ml._core import semconv as sc
from otel_ml._core.guard import error_counts
from tests import _keras_models as km


@pytest.fixture(autouse=True)
def _fresh_guard(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_guard, "_seen", {})  # as in a fresh process: nothing logged yet


def _instrument(telemetry) -> None:  # type: ignore[no-untyped-def]
    otel_ml.instrument(meter_provider=telemetry.meter_provider, tracer_provider=telemetry.tracer_provider)


def _value(telemetry, name):  # type: ignore[no-untyped-def]
    (point,) = telemetry.points(name)
    return point.value


def test_one_callback_object_instead_of_a_list(telemetry) -> None:
    _instrument(telemetry)
    history = keras.callbacks.History()
    km.sequential().fit(*km.data(samples=64), batch_size=16, epochs=2, verbose=0, callbacks=history)
    assert _value(telemetry, sc.METRIC_TRAIN_STEPS) == 8
    assert len(history.history["loss"]) == 2, "the user's callback still runs"
    assert error_counts() == {}


def test_steps_per_execution_on_data_of_unknown_length(telemetry) -> None:
    _instrument(telemetry)
    x, y = km.data(samples=400)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).filter(lambda a, b: True).batch(8)  # 50 batches, length unknown
    model = km.sequential(steps_per_execution=7)
    model.fit(ds, epochs=1, verbose=0)
    assert int(model.optimizer.iterations.numpy()) == 50
    assert _value(telemetry, sc.METRIC_TRAIN_STEPS) == 50
    assert _value(telemetry, sc.METRIC_TRAIN_SAMPLES) == 400
    (duration,) = telemetry.points(sc.METRIC_TRAIN_STEP_DURATION)
    assert duration.count == 50


class _Batches(keras.utils.PyDataset):
    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        super().__init__()
        self.x, self.y = x, y

    def __len__(self) -> int:
        return 3

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        return self.x[i * 16 : (i + 1) * 16], self.y[i * 16 : (i + 1) * 16]


@pytest.mark.parametrize("kind", ["pydataset", "generator"])
def test_python_data_without_a_partial_batch_size_is_no_error(telemetry, caplog, kind: str) -> None:
    _instrument(telemetry)
    x, y = km.data(samples=40)  # batches of 16, 16, 8

    def generator():  # type: ignore[no-untyped-def]
        while True:
            yield from ((x[i : i + 16], y[i : i + 16]) for i in range(0, 40, 16))

    data: Any = _Batches(x, y) if kind == "pydataset" else generator()
    with caplog.at_level(logging.WARNING, logger="otel_ml"):
        km.sequential().fit(data, steps_per_epoch=3, epochs=2, verbose=0)
    assert error_counts() == {}
    assert not caplog.records
    assert _value(telemetry, sc.METRIC_TRAIN_STEPS) == 6
    assert _value(telemetry, sc.METRIC_TRAIN_SAMPLES) == 80


def test_an_int_beyond_float_range_in_the_logs(telemetry) -> None:
    class Huge(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):  # type: ignore[no-untyped-def]
            logs.update({"huge": 10**400, "small": 3})

    _instrument(telemetry)
    km.sequential(metrics=["mae"]).fit(*km.data(samples=32), batch_size=16, epochs=2, verbose=0, callbacks=[Huge()])
    assert error_counts() == {}
    assert _value(telemetry, sc.METRIC_TRAIN_EPOCHS) == 2
    assert {p.attributes[sc.ML_METRIC_NAME] for p in telemetry.points(sc.METRIC_TRAIN_METRIC)} == {"mae", "small"}
    epochs = telemetry.finished(sc.SPAN_KERAS_EPOCH)
    assert len(epochs) == 2, "every epoch span is ended"
    assert all("ml.logs.huge" not in s.attributes for s in epochs)


class _RaisesOnStart(SpanProcessor):
    def on_start(self, span, parent_context=None):  # type: ignore[no-untyped-def]
        raise RuntimeError("processor broken")


@pytest.mark.internal_errors_expected
def test_a_span_processor_that_raises_costs_the_spans_only(telemetry, caplog) -> None:
    telemetry.tracer_provider.add_span_processor(_RaisesOnStart())
    _instrument(telemetry)
    with caplog.at_level(logging.WARNING, logger="otel_ml"):
        history = km.sequential().fit(*km.data(samples=64), batch_size=16, epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2
    assert _value(telemetry, sc.METRIC_TRAIN_STEPS) == 8
    assert _value(telemetry, sc.METRIC_TRAIN_SAMPLES) == 128
    assert _value(telemetry, sc.METRIC_TRAIN_EPOCHS) == 2
    assert sorted(site for site, _ in error_counts()) == ["starting span keras.epoch", "starting span keras.fit"]
    assert len([r for r in caplog.records if "processor broken" in r.getMessage()]) == 2


@pytest.mark.internal_errors_expected
def test_a_failing_job_costs_that_job_alone(telemetry, monkeypatch) -> None:
    from otel_ml._training import loss

    def broken(self):  # type: ignore[no-untyped-def]
        raise RuntimeError("job broken")

    monkeypatch.setattr(loss.LossReader, "new_epoch", broken)
    _instrument(telemetry)
    history = km.sequential().fit(*km.data(samples=64), batch_size=16, epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2
    assert error_counts() == {("keras.on_epoch_begin counts", RuntimeError): 2}
    assert _value(telemetry, sc.METRIC_TRAIN_STEPS) == 8
    assert _value(telemetry, sc.METRIC_TRAIN_EPOCHS) == 2
    assert len(telemetry.finished(sc.SPAN_KERAS_EPOCH)) == 2
