"""False positives and detections of the loss-spike rule, on healthy and on broken training runs.

Healthy runs: the Keras benchmark model (regression on random targets, the
case that raised false alarms) over several seeds, a small convnet on random
images, and a text model; each with a short last batch per epoch. Broken
runs: the benchmark model with one batch of targets scaled up 30x, and with
the learning rate multiplied by 1,000 mid-epoch. The exact batch losses of
each run (de-averaged with the true batch sizes, as otel_ml does) go through
the previous rule and the current one (otel_ml._training).

    python bench/bench_loss_spikes.py [--seeds 5] [--steps 200]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common
import keras
import numpy as np

from otel_ml._core.slow import RollingWindow
from otel_ml._training.loss import BatchLoss, SpikeDetector

BATCH = 64


class PreviousRule:
    """The rule before this change: 6 scaled MADs above the median, every batch, no scale floor."""

    def __init__(self, window: int = 64, threshold: float = 6.0, refresh: int = 8) -> None:
        self._window = RollingWindow(window, refresh)
        self._min, self._threshold = min(window, 16), threshold
        self._median = self._scale = math.inf

    def observe(self, loss: float) -> bool:
        spike = loss > self._median and (loss - self._median) > self._threshold * self._scale
        if self._window.add(loss) and len(self._window.values) >= self._min:
            median = self._window.median()
            mad = sorted(abs(x - median) for x in self._window.values)[len(self._window.values) // 2]
            self._median, self._scale = median, max(1.4826 * mad, 1e-3 * abs(median), 1e-12)
        return spike


class Losses(keras.callbacks.Callback):
    """Exact batch losses from Keras's running mean and the true batch sizes."""

    def __init__(self, sizes: list[int], hook: Callable[[int, Any], None] | None = None) -> None:
        super().__init__()
        self.sizes, self.hook, self.values, self.step = sizes, hook, [], 0
        self._loss = BatchLoss()

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self._loss.reset()

    def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
        if self.hook is not None:
            self.hook(self.step, self.model)

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        size = self.sizes[batch]
        self.values.append((self._loss.update(float(logs["loss"]), size), size == max(self.sizes)))
        self.step += 1


def _fit(
    model: keras.Model, x: np.ndarray, y: np.ndarray, epochs: int, hook: Any = None, batch: int = BATCH
) -> list[tuple[float, bool]]:
    n = len(x)
    sizes = [batch] * (n // batch) + ([n % batch] if n % batch else [])
    losses = Losses(sizes, hook)
    # A hook marks a broken run: its data stays in order, so the broken batch is one batch.
    model.fit(x, y, batch_size=batch, epochs=epochs, verbose=0, shuffle=hook is None, callbacks=[losses])
    return losses.values


def bench_model(seed: int, steps: int, y_scale: float = 1.0) -> tuple[keras.Model, np.ndarray, np.ndarray]:
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    n = BATCH * steps + 17  # a short last batch each epoch
    x = rng.normal(size=(n, 64)).astype("float32")
    y = (y_scale * rng.normal(size=(n, 1))).astype("float32")
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(384, activation="relu"), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    return model, x, y


def convnet(seed: int, steps: int) -> list[tuple[float, bool]]:
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    n = BATCH * steps + 9
    x, y = rng.random((n, 12, 12, 1), dtype="float32"), rng.integers(0, 10, size=(n,))
    model = keras.Sequential(
        [keras.Input((12, 12, 1)), keras.layers.Conv2D(8, 3, activation="relu"), keras.layers.Flatten(),
         keras.layers.Dense(10, activation="softmax")]
    )  # fmt: skip
    model.compile("adam", "sparse_categorical_crossentropy")
    return _fit(model, x, y, epochs=3)


def text(seed: int, steps: int) -> list[tuple[float, bool]]:
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    n = BATCH * steps + 5
    x, y = rng.integers(0, 500, size=(n, 20)), rng.integers(0, 2, size=(n, 1)).astype("float32")
    model = keras.Sequential(
        [keras.Input((20,), dtype="int32"), keras.layers.Embedding(500, 16), keras.layers.GlobalAveragePooling1D(),
         keras.layers.Dense(1, activation="sigmoid")]
    )  # fmt: skip
    model.compile("adam", "binary_crossentropy")
    return _fit(model, x, y, epochs=3)


def count(values: list[tuple[float, bool]]) -> tuple[int, int]:
    """(previous rule's detections, current rule's detections) over one run's batch losses."""
    previous, current = PreviousRule(), SpikeDetector(window=64, threshold=6.0)
    old = sum(previous.observe(loss) for loss, _ in values)
    new = sum(full and current.observe(loss) for loss, full in values)
    return old, new


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=200, help="full batches per epoch")
    args = parser.parse_args()
    rows = ["| run | batches | previous rule | current rule |", "|---|---:|---:|---:|"]

    def row(name: str, values: list[tuple[float, bool]]) -> None:
        old, new = count(values)
        rows.append(f"| {name} | {len(values)} | {old} | {new} |")

    for seed in range(args.seeds):
        model, x, y = bench_model(seed, args.steps)
        row(f"healthy: benchmark model, seed {seed}", _fit(model, x, y, epochs=3))
    for seed in range(2):
        model, x, y = bench_model(seed, args.steps // 4)
        row(f"healthy: benchmark model, batch 8, seed {seed}", _fit(model, x, y, epochs=3, batch=8))
        row(f"healthy: convnet, seed {seed}", convnet(seed, args.steps // 2))
        row(f"healthy: text model, seed {seed}", text(seed, args.steps // 2))
    model, x, y = bench_model(0, args.steps)
    y[BATCH * 150 : BATCH * 151] *= 30  # one batch of scaled-up targets, seen once per epoch
    row("broken: targets x30 in one batch (3 epochs)", _fit(model, x, y, epochs=3, hook=lambda step, m: None))

    def jump(step: int, m: keras.Model) -> None:
        if step == 300:
            m.optimizer.learning_rate.assign(m.optimizer.learning_rate * 1000)

    model, x, y = bench_model(1, args.steps)
    row("broken: learning rate x1000 at step 300", _fit(model, x, y, epochs=3, hook=jump))
    body = (
        f"Batch {BATCH}, {args.steps} full batches and one short batch per epoch, 3 epochs per run; "
        "window 64, threshold 6 (the defaults). Counts are detections; on healthy runs each is a false positive.\n\n"
        + "\n".join(rows)
        + "\n"
    )
    path = _common.write(
        "loss_spikes", "Loss-spike rule: false positives and detections", "python bench/bench_loss_spikes.py "
        + " ".join(sys.argv[1:]), body
    )  # fmt: skip
    print(path.read_text())


if __name__ == "__main__":
    main()
