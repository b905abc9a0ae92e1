"""Batch loss de-averaging, anomalies, learning rate, and odd log values."""

from __future__ import annotations

import logging
import math

import keras
import numpy as np
import pytest

import otel_ml
from otel_ml._core import semconv as sc
from otel_ml._training import steps as steps_module
from otel_ml._training.flavour import as_float
from otel_ml._training.loss import SpikeDetector
from tests import _keras_models as km


def _instrument(telemetry, **options):  # type: ignore[no-untyped-def]
    otel_ml.instrument(meter_provider=telemetry.meter_provider, tracer_provider=telemetry.tracer_provider, **options)


def _train_loss(telemetry) -> float:  # type: ignore[no-untyped-def]
    (point,) = [p for p in telemetry.points(sc.METRIC_TRAIN_LOSS) if p.attributes[sc.ML_PHASE] == sc.PHASE_TRAIN]
    return point.value


def test_batch_loss_is_recovered_from_the_running_mean(telemetry) -> None:
    """A frozen model predicts 0, so each batch's loss is mean(y**2) of that batch, known exactly."""
    _instrument(telemetry)
    x, _ = km.data(samples=100)
    y = np.repeat(np.arange(1, 8, dtype="float32"), 16)[:100].reshape(-1, 1)  # batch i has y = i+1
    km.frozen().fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
    # The last batch holds 4 samples of y=7: its loss is 49, although Keras logs the epoch mean.
    assert _train_loss(telemetry) == pytest.approx(49.0, rel=1e-5)


def _fit_input(data: str, x: np.ndarray, y: np.ndarray, batch_size: int) -> dict[str, object]:
    """fit() arguments: arrays (Keras knows the batch size) or a tf.data pipeline (otel_ml reads Keras's count)."""
    if data == "arrays":
        return {"x": x, "y": y, "batch_size": batch_size, "shuffle": False}
    import tensorflow as tf

    return {"x": tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)}


@pytest.mark.parametrize("data", ["arrays", "tf.data"])
def test_nan_loss_is_counted_logged_once_and_training_goes_on(telemetry, caplog, kit, data) -> None:  # type: ignore[no-untyped-def]
    """Keras 2's batch losses are read when they settle, not at each step: still every NaN batch, at its step."""
    _instrument(telemetry)
    x, y = km.data(samples=112)  # 7 steps
    y[3 * 16] = np.nan  # batch 3 turns the running mean (and so every later batch loss) NaN
    with caplog.at_level(logging.WARNING, logger="otel_ml"):
        kit.frozen().fit(**_fit_input(data, x, y, 16), epochs=1, verbose=0)

    (steps,) = telemetry.points(sc.METRIC_TRAIN_STEPS)
    assert steps.value == 7
    anomalies = {p.attributes[sc.ML_ANOMALY_KIND]: p.value for p in telemetry.points(sc.METRIC_TRAIN_ANOMALIES)}
    assert anomalies == {sc.ANOMALY_NAN: 4}
    # The gauge keeps the last finite batch loss (the SDK drops non-finite gauge values).
    assert _train_loss(telemetry) == pytest.approx(float(np.mean(y[32:48] ** 2)), rel=1e-5)
    assert not [r for r in caplog.records if "not finite" in r.getMessage()]
    warnings = [r for r in caplog.records if "nan_loss" in r.getMessage()]
    assert len(warnings) == 1
    (epoch,) = telemetry.finished(sc.SPAN_KERAS_EPOCH)
    (event,) = [e for e in epoch.events if e.name == "ml.anomaly"]
    assert event.attributes[sc.ML_ANOMALY_KIND] == sc.ANOMALY_NAN
    assert event.attributes[sc.ML_STEP] == 3


@pytest.mark.parametrize("data", ["arrays", "tf.data"])
def test_fit_raising_mid_epoch_still_reports_the_losses_kept_until_then(telemetry, kit, data, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A callback raises at the end of batch 5, before otel_ml's hook: steps 1-4 were kept unread until then."""
    monkeypatch.setattr(steps_module, "FLUSH_NS", 1 << 62)  # only the first step flushes, however slow the machine

    class RaiseAtBatch5(kit.keras.callbacks.Callback):  # type: ignore[misc,name-defined]
        def on_train_batch_end(self, batch, logs=None):  # type: ignore[no-untyped-def]
            if batch == 5:
                raise km.Boom("batch 5")

    _instrument(telemetry)
    x, y = km.data(samples=112)
    y[3 * 16] = np.nan
    with pytest.raises(km.Boom):
        kit.frozen().fit(**_fit_input(data, x, y, 16), epochs=1, verbose=0, callbacks=[RaiseAtBatch5()])

    (steps,) = telemetry.points(sc.METRIC_TRAIN_STEPS)
    assert steps.value == 5  # batches 0-4 reached otel_ml
    anomalies = {p.attributes[sc.ML_ANOMALY_KIND]: p.value for p in telemetry.points(sc.METRIC_TRAIN_ANOMALIES)}
    assert anomalies == {sc.ANOMALY_NAN: 2}  # batches 3 and 4
    (epoch,) = telemetry.finished(sc.SPAN_KERAS_EPOCH)
    (event,) = [e for e in epoch.events if e.name == "ml.anomaly"]
    assert event.attributes[sc.ML_STEP] == 3
    if data == "arrays" or kit.name == "tf_keras":
        # Keras declared the batch size (Keras 2: the tf.data pipeline declares it, rows.batch(16)):
        # batch 2's loss is exact without Keras's count.
        assert _train_loss(telemetry) == pytest.approx(float(np.mean(y[32:48] ** 2)), rel=1e-5)
        (samples,) = telemetry.points(sc.METRIC_TRAIN_SAMPLES)
        assert samples.value == 5 * 16
    else:
        # Keras counted batch 5 too, which never reached otel_ml: the count of the steps kept is not
        # sure, so no finite loss is given for them and their samples are not guessed.
        assert _train_loss(telemetry) == pytest.approx(float(np.mean(y[:16] ** 2)), rel=1e-5)
        (samples,) = telemetry.points(sc.METRIC_TRAIN_SAMPLES)
        assert samples.value == 16


def test_loss_spike_is_counted_once(telemetry, kit) -> None:  # type: ignore[no-untyped-def]
    _instrument(telemetry)
    rng = np.random.default_rng(3)
    x, _ = km.data(samples=40 * 8)
    y = (1.0 + 0.05 * rng.normal(size=(40 * 8, 1))).astype("float32")
    y[35 * 8 : 36 * 8] = 30.0  # batch 35: loss ~900 against ~1
    kit.frozen().fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    anomalies = {p.attributes[sc.ML_ANOMALY_KIND]: p.value for p in telemetry.points(sc.METRIC_TRAIN_ANOMALIES)}
    assert anomalies == {sc.ANOMALY_SPIKE: 1}
    (epoch,) = telemetry.finished(sc.SPAN_KERAS_EPOCH)
    (event,) = [e for e in epoch.events if e.name == "ml.anomaly"]
    assert event.attributes[sc.ML_STEP] == 35


@pytest.mark.parametrize(
    ("optimizer", "expected"),
    [
        (lambda: keras.optimizers.Adam(1e-3), 1e-3),
        (lambda: keras.optimizers.SGD(keras.optimizers.schedules.ExponentialDecay(0.1, 4, 0.5)), 0.1 * 0.5 ** (8 / 4)),
        (lambda: keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.02)), 0.02),
    ],
    ids=["constant", "schedule", "loss-scale"],
)
def test_learning_rate_is_read_from_the_optimizer(telemetry, optimizer, expected) -> None:  # type: ignore[no-untyped-def]
    _instrument(telemetry)
    model = km.sequential(optimizer=optimizer())
    x, y = km.data(samples=64)
    model.fit(x, y, batch_size=16, epochs=2, verbose=0)  # 8 iterations
    (point,) = telemetry.points(sc.METRIC_TRAIN_LEARNING_RATE)
    assert point.value == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("0.5", None),
        (True, None),
        (3, 3.0),
        (np.float32(0.25), 0.25),
        (np.array(1.5), 1.5),
        (np.array([1.0, 2.0]), None),
        (float("nan"), "nan"),
    ],
)
def test_odd_log_values_are_read_or_skipped(value, expected) -> None:  # type: ignore[no-untyped-def]
    result = as_float(value)
    if expected == "nan":
        assert result is not None and math.isnan(result)
    else:
        assert result == expected


def test_odd_logs_from_a_callback_do_not_break_training(telemetry) -> None:
    import tensorflow as tf

    class OddLogs(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):  # type: ignore[no-untyped-def]
            logs.update({"note": "text", "none": None, "vec": np.ones(3), "tensor": tf.constant(2.5)})

    _instrument(telemetry)
    km.sequential().fit(*km.data(samples=32), batch_size=16, epochs=1, verbose=0, callbacks=[OddLogs()])
    names = {p.attributes[sc.ML_METRIC_NAME]: p.value for p in telemetry.points(sc.METRIC_TRAIN_METRIC)}
    assert names == {"tensor": 2.5}


def test_spike_rule_ignores_small_batch_noise_and_plateaus_but_catches_blow_ups() -> None:
    rng = np.random.default_rng(0)
    detector = SpikeDetector(window=64, threshold=6.0)
    noisy = rng.chisquare(8, size=5000) / 8  # batch losses of an MSE over batches of 8: long right tail
    assert sum(detector.observe(float(v)) for v in noisy) == 0
    assert detector.observe(30.0)  # a broken batch, ~30x the usual loss

    plateau = SpikeDetector(window=64, threshold=6.0)
    flat = 0.5 + 0.0005 * rng.normal(size=500)  # a converged loss: tiny spread
    assert sum(plateau.observe(float(v)) for v in flat) == 0
    assert not plateau.observe(0.6), "20% above a flat loss is not a spike: the loss must at least double"
    assert plateau.observe(1.5)

    negative = SpikeDetector(window=64, threshold=6.0)  # e.g. a cosine-similarity loss near -0.9
    assert sum(negative.observe(float(v)) for v in -0.9 + 0.01 * rng.normal(size=500)) == 0
    assert negative.observe(0.5)
