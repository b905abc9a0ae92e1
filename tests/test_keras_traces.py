"""Spans: fit, epochs, direct evaluate/predict, and slow steps linked from the step-time exemplar."""

from __future__ import annotations

import bisect

import pytest
from opentelemetry.trace import StatusCode

import otel_ml
from otel_ml._core import semconv as sc
from tests import _keras_models as km


def _instrument(telemetry, **options):  # type: ignore[no-untyped-def]
    otel_ml.instrument(meter_provider=telemetry.meter_provider, tracer_provider=telemetry.tracer_provider, **options)


def test_fit_and_epoch_spans_carry_the_run(telemetry, kit) -> None:
    _instrument(telemetry, run_name="r1")
    model = kit.sequential(name="m1", metrics=["mae"])
    x, y = km.data(samples=64)
    history = model.fit(x, y, batch_size=16, epochs=2, verbose=0)

    (fit,) = telemetry.finished(sc.SPAN_KERAS_FIT)
    assert fit.attributes[sc.ML_MODEL_NAME] == "m1"
    assert fit.attributes[sc.ML_RUN_NAME] == "r1"
    assert fit.attributes[sc.ML_EPOCHS] == 2
    assert fit.attributes[sc.ML_BATCH_SIZE] == 16
    assert fit.attributes[sc.ML_STEPS_PER_EPOCH] == 4
    assert fit.attributes[sc.ML_STEP] == 8
    assert fit.status.status_code is StatusCode.UNSET
    epochs = sorted(telemetry.finished(sc.SPAN_KERAS_EPOCH), key=lambda s: s.attributes[sc.ML_EPOCH])
    assert [s.attributes[sc.ML_EPOCH] for s in epochs] == [0, 1]
    assert all(s.parent.span_id == fit.context.span_id for s in epochs)
    assert epochs[1].attributes["ml.logs.loss"] == pytest.approx(history.history["loss"][1], rel=1e-6)
    assert epochs[1].attributes["ml.logs.mae"] == pytest.approx(history.history["mae"][1], rel=1e-6)


def test_direct_evaluate_and_predict_get_spans(telemetry, kit) -> None:
    _instrument(telemetry)
    model = kit.sequential(name="ev")
    x, y = km.data(samples=32)
    model.evaluate(x, y, verbose=0)
    model.predict(x, verbose=0)
    (evaluate,) = telemetry.finished(sc.SPAN_KERAS_EVALUATE)
    (predict,) = telemetry.finished(sc.SPAN_KERAS_PREDICT)
    assert evaluate.attributes[sc.ML_MODEL_NAME] == predict.attributes[sc.ML_MODEL_NAME] == "ev"
    assert telemetry.points(sc.METRIC_TRAIN_STEPS) == []


def test_slow_step_span_is_behind_the_exemplar_of_its_bucket(telemetry, kit) -> None:
    _instrument(telemetry, slow_step_seconds=0.25)
    model = kit.sequential(name="slow")
    x, y = km.data(samples=160)  # 10 steps per epoch
    model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[kit.SleepAt(step=13, seconds=0.4)])

    (span,) = telemetry.finished(sc.SPAN_KERAS_TRAIN_STEP)  # fast steps have no span at all
    assert span.attributes[sc.ML_STEP] == 13
    assert span.attributes[sc.ML_EPOCH] == 1
    assert span.attributes[sc.ML_BATCH_INDEX] == 3
    assert span.attributes[sc.ML_BATCH_SIZE] == 16
    assert span.attributes[sc.ML_SLOW_THRESHOLD] == 0.25
    assert isinstance(span.attributes[sc.ML_BATCH_LOSS], float)
    assert (span.end_time - span.start_time) / 1e9 >= 0.4
    epoch1 = next(s for s in telemetry.finished(sc.SPAN_KERAS_EPOCH) if s.attributes[sc.ML_EPOCH] == 1)
    assert span.parent.span_id == epoch1.context.span_id

    (point,) = telemetry.points(sc.METRIC_TRAIN_STEP_DURATION)
    assert point.count == 20
    (exemplar,) = point.exemplars  # fast steps leave no exemplar
    assert exemplar.trace_id == span.context.trace_id
    assert exemplar.span_id == span.context.span_id
    assert exemplar.value >= 0.4
    bucket = bisect.bisect_left(point.explicit_bounds, exemplar.value)
    assert point.bucket_counts[bucket] >= 1


def test_adaptive_threshold_finds_the_slow_step_and_skips_warmup(telemetry) -> None:
    _instrument(telemetry, warmup_steps=1)
    model = km.sequential(name="adaptive")
    x, y = km.data(samples=640)  # 40 steps
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[km.SleepAt(step=30, seconds=0.5)])
    slow = telemetry.finished(sc.SPAN_KERAS_TRAIN_STEP)
    steps = {s.attributes[sc.ML_STEP] for s in slow}
    assert 30 in steps
    assert 0 not in steps, "the warm-up (tracing) step is never reported as slow"
    # A loaded machine makes a few more outliers of its own; a threshold that failed would report
    # most of the 39 steps after warm-up.
    assert len(slow) <= 8, f"only outliers get spans, got steps {sorted(steps)}"


def test_fit_that_raises_reaches_the_user_unchanged(telemetry, kit) -> None:
    _instrument(telemetry)
    model = kit.sequential(name="raiser")
    x, y = km.data(samples=32)
    error = km.Boom("user callback failed")
    with pytest.raises(km.Boom) as caught:
        model.fit(x, y, batch_size=16, epochs=3, verbose=0, callbacks=[kit.RaiseAtEpochEnd(error)])
    assert caught.value is error

    (fit,) = telemetry.finished(sc.SPAN_KERAS_FIT)
    assert fit.status.status_code is StatusCode.ERROR
    assert [e.attributes["exception.type"] for e in fit.events if e.name == "exception"] == ["tests._keras_models.Boom"]
    (epoch,) = telemetry.finished(sc.SPAN_KERAS_EPOCH)
    assert epoch.status.status_code is StatusCode.ERROR


def test_fit_raising_inside_keras_is_unchanged(telemetry, kit) -> None:
    model = kit.sequential()
    x, y = km.data(samples=32)
    with pytest.raises(ValueError) as plain:
        model.fit(x[:, :3], y, verbose=0)
    _instrument(telemetry)
    with pytest.raises(ValueError) as instrumented:
        model.fit(x[:, :3], y, verbose=0)
    assert str(instrumented.value) == str(plain.value)
    assert telemetry.finished(sc.SPAN_KERAS_FIT)[0].status.status_code is StatusCode.ERROR
