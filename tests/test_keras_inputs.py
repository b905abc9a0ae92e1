"""Exact samples and an exact (or absent, never invented) batch loss for every tf.data shape.

The frozen model predicts 0 forever, so each batch's true loss is mean(y**2)
over that batch, known exactly for any pipeline that keeps the order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf

import otel_ml
from otel_ml._core import semconv as sc
from tests import _keras_models as km

N, B = 100, 16  # 6 full batches and one of 4
X, _ = km.data(samples=N)
Y = np.arange(1, N + 1, dtype="float32").reshape(-1, 1) / N  # every batch has its own loss


def _slices() -> tf.data.Dataset:
    return tf.data.Dataset.from_tensor_slices((X, Y))


def _loss(lo: int, hi: int) -> float:
    return float(np.mean(Y[lo:hi] ** 2))


# name -> (dataset, fit kwargs, samples over 2 epochs, true loss of the last batch or None if not order-preserving)
CASES: dict[str, tuple[Callable[[], tf.data.Dataset], dict[str, Any], int, float | None]] = {
    "batch": (lambda: _slices().batch(B), {}, 2 * N, _loss(96, 100)),
    "batch_drop_remainder": (lambda: _slices().batch(B, drop_remainder=True), {}, 2 * 96, _loss(80, 96)),
    "shuffle_batch_prefetch": (lambda: _slices().shuffle(N, seed=1).batch(B).prefetch(2), {}, 2 * N, None),
    "map_batch": (lambda: _slices().map(lambda a, b: (a * 2.0, b)).batch(B), {}, 2 * N, _loss(96, 100)),
    "batch_cache": (lambda: _slices().batch(B).cache(), {}, 2 * N, _loss(96, 100)),
    "batch_take": (lambda: _slices().batch(B).take(3), {}, 2 * 48, _loss(32, 48)),
    "repeat_batch_steps": (lambda: _slices().repeat().batch(B), {"steps_per_epoch": 5}, 2 * 80, _loss(44, 60)),
    "batch_repeat_steps": (lambda: _slices().batch(B).repeat(), {"steps_per_epoch": 7}, 2 * N, _loss(96, 100)),
    "padded_batch": (lambda: _slices().padded_batch(B), {}, 2 * N, _loss(96, 100)),
    "unbatch_batch": (lambda: _slices().batch(10).unbatch().batch(B), {}, 2 * N, None),
}


class _Means(keras.callbacks.Callback):
    """Keras's logged running means, per epoch, to derive true batch losses of a shuffled order."""

    def __init__(self) -> None:
        super().__init__()
        self.epochs: list[list[float]] = []

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self.epochs.append([])

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        self.epochs[-1].append(float(logs["loss"]))


def _true_losses(means: _Means) -> list[float]:
    """Each batch's loss from the running means and the true sizes (six of 16, one of 4), in order."""
    sizes = [B] * 6 + [N - 6 * B]
    losses = []
    for epoch in means.epochs:
        seen, previous = 0, 0.0
        for mean, size in zip(epoch, sizes, strict=True):
            losses.append((mean * (seen + size) - previous * seen) / size)
            seen, previous = seen + size, mean
    return losses


@pytest.mark.parametrize("case", sorted(CASES))
def test_tf_data_samples_and_batch_loss(telemetry, case: str) -> None:
    make, kwargs, samples, last = CASES[case]
    otel_ml.instrument(meter_provider=telemetry.meter_provider, tracer_provider=telemetry.tracer_provider)
    means = _Means()
    km.frozen().fit(make(), epochs=2, verbose=0, callbacks=[means], **kwargs)
    (counted,) = telemetry.points(sc.METRIC_TRAIN_SAMPLES)
    assert counted.value == samples
    (loss,) = [p.value for p in telemetry.points(sc.METRIC_TRAIN_LOSS) if p.attributes[sc.ML_PHASE] == sc.PHASE_TRAIN]
    if last is not None:
        assert loss == pytest.approx(last, rel=1e-5)
    elif case.startswith("shuffle"):
        assert loss == pytest.approx(_true_losses(means)[-1], rel=1e-4)
    else:  # length unknown: the short last batch may get no loss, and the gauge keeps an earlier one
        assert round(loss, 4) in {round(v, 4) for v in _true_losses(means)}, "a real batch's loss, never an artefact"
    assert telemetry.points(sc.METRIC_TRAIN_ANOMALIES) == []
