"""Exact step, sample and epoch counts for every kind of model and callbacks= form."""

from __future__ import annotations

import pytest

import otel_ml
from otel_ml._core import semconv as sc
from tests import _keras_models as km


def _value(telemetry, name):  # type: ignore[no-untyped-def]
    points = telemetry.points(name)
    assert len(points) == 1, f"{name}: expected one series, got {[dict(p.attributes) for p in points]}"
    return points[0]


@pytest.mark.parametrize("kind", sorted(km.MODELS))
@pytest.mark.parametrize("steps_per_execution", [1, 4])
def test_exact_counts(telemetry, kit, kind: str, steps_per_execution: int) -> None:
    otel_ml.instrument(meter_provider=telemetry.meter_provider, tracer_provider=telemetry.tracer_provider)
    model = kit.models[kind](steps_per_execution=steps_per_execution)
    x, y = km.data(samples=100)  # batch 16: 6 full batches + one of 4
    model.fit(x, y, batch_size=16, epochs=2, verbose=0)

    steps = _value(telemetry, sc.METRIC_TRAIN_STEPS)
    assert steps.value == 14
    assert dict(steps.attributes) == {
        sc.ML_FRAMEWORK: kit.framework,
        sc.ML_MODEL_NAME: model.name,
        sc.ML_RUN_NAME: model.name,
    }
    assert _value(telemetry, sc.METRIC_TRAIN_SAMPLES).value == 200
    assert _value(telemetry, sc.METRIC_TRAIN_EPOCHS).value == 2
    assert _value(telemetry, sc.METRIC_TRAIN_STEP_DURATION).count == 14
    assert _value(telemetry, sc.METRIC_TRAIN_EPOCH_DURATION).count == 2
    assert len(telemetry.finished(sc.SPAN_KERAS_FIT)) == 1
    assert len(telemetry.finished(sc.SPAN_KERAS_EPOCH)) == 2


@pytest.mark.parametrize("form", ["none", "list", "tuple", "callbacklist", "positional"])
def test_callback_injected_once_whatever_the_form(telemetry, kit, form: str) -> None:
    otel_ml.instrument(meter_provider=telemetry.meter_provider, tracer_provider=telemetry.tracer_provider)
    model = kit.sequential()
    x, y = km.data(samples=64)
    history = kit.keras.callbacks.History()
    user = [history]
    if form == "none":
        model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    elif form == "list":
        model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=user)
    elif form == "tuple":
        model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=tuple(user))
    elif form == "callbacklist":
        cbl = kit.keras.callbacks.CallbackList(user, model=model)
        model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=cbl)
        assert cbl.callbacks == [history], "the user's CallbackList is left as it was given"
    else:
        model.fit(x, y, 16, 1, 0, user)
    assert user == [history], "the user's list is never mutated"
    assert _value(telemetry, sc.METRIC_TRAIN_STEPS).value == 4
    if form != "none":
        assert history.history and len(history.history["loss"]) == 1, "user callbacks still run"


def test_validation_data_is_not_double_counted(telemetry, kit) -> None:
    otel_ml.instrument(meter_provider=telemetry.meter_provider, tracer_provider=telemetry.tracer_provider)
    model = kit.sequential(metrics=["mae"])
    x, y = km.data(samples=64)
    history = model.fit(x, y, batch_size=16, epochs=3, verbose=0, validation_data=(x[:32], y[:32]))

    assert _value(telemetry, sc.METRIC_TRAIN_STEPS).value == 12  # validation batches are not training steps
    assert telemetry.finished(sc.SPAN_KERAS_EVALUATE) == []  # fit's own evaluate is not a second root
    fit = telemetry.finished(sc.SPAN_KERAS_FIT)
    assert len(fit) == 1
    assert {s.parent.span_id for s in telemetry.finished(sc.SPAN_KERAS_EPOCH)} == {fit[0].context.span_id}
    losses = {p.attributes[sc.ML_PHASE]: p.value for p in telemetry.points(sc.METRIC_TRAIN_LOSS)}
    assert losses[sc.PHASE_VALIDATION] == pytest.approx(history.history["val_loss"][-1], rel=1e-6)
    metrics = {
        (p.attributes[sc.ML_METRIC_NAME], p.attributes[sc.ML_PHASE]): p.value
        for p in telemetry.points(sc.METRIC_TRAIN_METRIC)
    }
    assert metrics == {
        ("mae", sc.PHASE_TRAIN): pytest.approx(history.history["mae"][-1], rel=1e-6),
        ("mae", sc.PHASE_VALIDATION): pytest.approx(history.history["val_mae"][-1], rel=1e-6),
    }


def test_tf_keras_is_keras_3_and_counted(telemetry) -> None:
    import tensorflow as tf

    otel_ml.instrument(meter_provider=telemetry.meter_provider, tracer_provider=telemetry.tracer_provider)
    model = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(1)], name="tfk")
    model.compile("sgd", "mse")
    x, y = km.data(samples=48)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert _value(telemetry, sc.METRIC_TRAIN_STEPS).value == 3
    assert _value(telemetry, sc.METRIC_TRAIN_STEPS).attributes[sc.ML_MODEL_NAME] == "tfk"


def test_run_name_argument_env_and_context(telemetry, monkeypatch) -> None:
    monkeypatch.setenv("OTEL_ML_RUN_NAME", "from-env")
    otel_ml.instrument(meter_provider=telemetry.meter_provider, tracer_provider=telemetry.tracer_provider)
    model = km.sequential(name="m")
    x, y = km.data(samples=16)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    with otel_ml.run("from-context"):
        model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    otel_ml.uninstrument()
    otel_ml.instrument(
        meter_provider=telemetry.meter_provider, tracer_provider=telemetry.tracer_provider, run_name="from-arg"
    )
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    runs = {p.attributes[sc.ML_RUN_NAME]: p.value for p in telemetry.points(sc.METRIC_TRAIN_STEPS)}
    assert runs == {"from-env": 1, "from-context": 1, "from-arg": 1}


def test_generator_data_counts_the_samples_keras_counted(telemetry, kit) -> None:
    otel_ml.instrument(meter_provider=telemetry.meter_provider, tracer_provider=telemetry.tracer_provider)
    model = kit.sequential()
    x, y = km.data(samples=40)

    def batches():  # type: ignore[no-untyped-def]
        while True:
            for i in range(0, 40, 8):
                yield x[i : i + 8], y[i : i + 8]

    model.fit(batches(), steps_per_epoch=5, epochs=2, verbose=0)
    assert _value(telemetry, sc.METRIC_TRAIN_STEPS).value == 10
    assert _value(telemetry, sc.METRIC_TRAIN_SAMPLES).value == 80  # 2 epochs x 5 batches x 8
