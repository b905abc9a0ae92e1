"""Exact figures at the edges of ``fit`` (issue 25), on both Keras flavours through the ``kit`` fixture.

- steps_per_epoch below one pass over array data: Keras 3 ends an epoch
  early where the data runs out and starts the next at the data's first
  batch; Keras 2 repeats the data without a break. Either way the short
  batch is where the data runs out, and its samples and loss are exact.
- a loss only from ``add_loss`` (no compiled loss): Keras 2 weighs each batch
  by 1 in its loss ``Mean``; samples come from the data, never from that weight.
- the fit span's batch size, epochs run and starting epoch.
- a fit inside a fit's callback, reported on its own under the outer fit's span.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import otel_ml
from otel_ml._core import semconv as sc
from tests import _keras_models as km


def _instrument(telemetry: Any) -> None:
    otel_ml.instrument(meter_provider=telemetry.meter_provider, tracer_provider=telemetry.tracer_provider)


def _by_model(telemetry: Any, name: str, model: str, phase: str | None = None) -> list[Any]:
    points = telemetry.model_points(name, model)
    return [p for p in points if phase is None or p.attributes.get(sc.ML_PHASE) == phase]


def _value(telemetry: Any, name: str, model: str, phase: str | None = None) -> float:
    (point,) = _by_model(telemetry, name, model, phase)
    return float(point.value)


@pytest.mark.parametrize("epochs", [4, 5])
def test_steps_per_epoch_below_the_array_data(telemetry, kit, epochs: int) -> None:  # type: ignore[no-untyped-def]
    """300 rows in batches of 64 (four full, one of 44), 3 steps per epoch."""
    _instrument(telemetry)
    x, y = km.data(samples=300)
    model = kit.frozen(name="spe_short")
    model.fit(x, y, batch_size=64, steps_per_epoch=3, epochs=epochs, verbose=0, shuffle=False)
    starts = [0, 64, 128, 192, 256]
    if kit.name == "keras":
        # Each epoch of 3 steps, every other one cut short at the 44-row batch.
        positions = [p for e in range(epochs) for p in ([0, 1, 2] if e % 2 == 0 else [3, 4])]
    else:
        positions = [k % 5 for k in range(3 * epochs)]
    sizes = [44 if p == 4 else 64 for p in positions]
    last = starts[positions[-1]]
    truth = float(np.mean(y[last : last + sizes[-1]] ** 2, dtype="float64"))
    assert model.optimizer.iterations.numpy() == len(positions)
    assert _value(telemetry, sc.METRIC_TRAIN_STEPS, "spe_short") == len(positions)
    assert _value(telemetry, sc.METRIC_TRAIN_SAMPLES, "spe_short") == sum(sizes)
    assert _value(telemetry, sc.METRIC_TRAIN_LOSS, "spe_short", sc.PHASE_TRAIN) == pytest.approx(truth, rel=1e-5)


def _endpoint_model(k: Any, name: str) -> Any:
    """The endpoint-layer pattern: the loss comes from ``add_loss`` in a layer that sees the targets.

    Zero weights and a learning rate of 0 keep every logit at 0, so a batch's
    loss is log(2) times the mean of its sample weights, known exactly.
    """

    class LogisticEndpoint(k.layers.Layer):  # type: ignore[misc,name-defined]
        def __init__(self, **kwargs: Any) -> None:
            k.layers.Layer.__init__(self, **kwargs)
            self.loss_fn = k.losses.BinaryCrossentropy(from_logits=True)

        def call(self, logits: Any, targets: Any = None, sample_weight: Any = None) -> Any:
            if targets is not None:
                self.add_loss(self.loss_fn(targets, logits, sample_weight))
            return k.activations.sigmoid(logits)

    inputs = k.Input((4,), name="inputs")
    targets = k.Input((1,), name="targets")
    weights = k.Input((1,), name="sample_weight")
    logits = k.layers.Dense(1, kernel_initializer="zeros", bias_initializer="zeros")(inputs)
    model = k.Model([inputs, targets, weights], LogisticEndpoint()(logits, targets, weights), name=name)
    model.compile(k.optimizers.SGD(learning_rate=0.0))
    return model


@pytest.mark.parametrize("data", ["dict", "tf.data", "tf.data-prefetch"])
def test_loss_only_from_add_loss(telemetry, kit, data: str) -> None:  # type: ignore[no-untyped-def]
    """200 rows in batches of 32 (six full, one of 8), 2 epochs: samples and the short last batch's loss."""
    import tensorflow as tf

    _instrument(telemetry)
    rows, size = 200, 32
    x, _ = km.data(samples=rows)
    w = (np.arange(rows, dtype="float32") / rows).reshape(-1, 1)
    features = {"inputs": x, "targets": (x[:, :1] > 0).astype("float32"), "sample_weight": w}
    model = _endpoint_model(kit.keras, "endpoint")
    if data == "dict":
        model.fit(features, batch_size=size, epochs=2, verbose=0, shuffle=False)
    else:
        ds = tf.data.Dataset.from_tensor_slices(features).batch(size)
        model.fit(ds.prefetch(2) if data.endswith("prefetch") else ds, epochs=2, verbose=0)
    truth = float(np.log(2.0) * np.mean(w[192:200], dtype="float64"))
    assert model.optimizer.iterations.numpy() == 14
    assert _value(telemetry, sc.METRIC_TRAIN_STEPS, "endpoint") == 14
    assert _value(telemetry, sc.METRIC_TRAIN_SAMPLES, "endpoint") == 2 * rows
    assert _value(telemetry, sc.METRIC_TRAIN_LOSS, "endpoint", sc.PHASE_TRAIN) == pytest.approx(truth, rel=1e-5)
