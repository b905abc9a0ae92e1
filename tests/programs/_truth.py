"""What a corpus program knows about its own training, written where the test can read it.

Each program calls :func:`record` once per model after training. Outside the
test (``CORPUS_TRUTH`` unset) it does nothing, so every program is also an
ordinary script. Nothing is printed: a program's stdout must not change.
"""

from __future__ import annotations

import importlib
import json
import os
from typing import Any

# The Keras the corpus runs on: Keras 3 (``keras``), or Keras 2 with ``CORPUS_KERAS=tf_keras``. Programs
# written for both take it from here (``from _truth import keras``).
keras: Any = importlib.import_module(os.environ.get("CORPUS_KERAS", "keras"))


def iterations(optimizer: Any) -> int:
    return int(optimizer.iterations.numpy())


def learning_rate(optimizer: Any) -> float:
    if hasattr(keras, "ops"):
        return float(keras.ops.convert_to_numpy(optimizer.learning_rate))
    return float(keras.backend.get_value(optimizer.learning_rate))  # Keras 2


def record(
    model: Any,
    epochs: int,
    samples: int | None,
    last_loss: float | None,
    optimizers: dict[str, Any] | None = None,
    samples_counted: bool = True,
) -> None:
    """Write the true figures of ``model``'s training (cumulative over its fits).

    ``optimizers``: the ones that trained, by the model attribute holding them
    (default: the compiled one); each one's steps and learning rate are recorded.
    ``samples_counted=False``: otel_ml documents that it cannot count the
    samples here (a custom ``train_step`` on data of undeclared batch size).
    """
    path = os.environ.get("CORPUS_TRUTH")
    if not path:
        return
    used = optimizers if optimizers is not None else {"optimizer": model.optimizer}
    entry = {
        "model": model.name,
        "epochs": epochs,
        "samples": samples,
        "samples_counted": samples_counted,
        "last_loss": last_loss,
        "steps": {name: iterations(opt) for name, opt in used.items()},
        "learning_rates": {name: learning_rate(opt) for name, opt in used.items()},
    }
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")


class LossOfBatch(keras.callbacks.Callback):
    """The true loss of one batch of ordered array data, computed just before the step trains on it."""

    def __init__(self, x: Any, y: Any, batch_size: int, epoch: int, batch: int) -> None:
        super().__init__()
        self.x, self.y, self.size, self.epoch, self.batch = x, y, batch_size, epoch, batch
        self.current = -1
        self.value: float | None = None

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self.current = epoch

    def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
        if self.current == self.epoch and batch == self.batch:
            lo = batch * self.size
            x = self.x[lo : lo + self.size]
            y = self.y[lo : lo + self.size]
            y_pred = self.model(x, training=True)
            self.value = float(self.model.compute_loss(x=x, y=y, y_pred=y_pred, training=False))
