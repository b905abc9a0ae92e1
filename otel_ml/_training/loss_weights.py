"""Which weights Keras's logged ``loss`` was averaged with, so that the batch loss is exact.

Keras (3, and 2 alike) logs ``loss`` as the ``result()`` of the ``Mean`` metric named "loss"
among ``model.metrics``: its ``count`` grows by the batch size under the
default ``train_step``, and by one per batch (or by the batch size, when a
per-sample loss vector is passed) in the custom ``train_step`` patterns of
the guide "Customizing what happens in fit()". The growth of that ``count``
is therefore the exact weight of each execution. It is read (one scalar
read, right after Keras's own logs were read) only when the weight is not
already known for free, i.e. when the default ``train_step`` runs on data
of undeclared batch size, or for a custom ``train_step``. Where no such
metric exists the batch loss is left absent: the logged value has no weight
otel_ml could trust.
"""

from __future__ import annotations

from typing import Any

from otel_ml._training.loss import BatchLoss
from otel_ml._training.values import as_float, read_attribute


def _default_train_step(model: Any, builtin: str) -> bool:
    for cls in type(model).__mro__:
        if "train_step" in cls.__dict__:
            return cls.__module__.startswith(builtin)
    return False


def _loss_count(model: Any) -> Any:
    for metric in read_attribute(model, "metrics") or ():
        if getattr(metric, "name", None) == "loss" and hasattr(metric, "count") and hasattr(metric, "total"):
            return metric.count
    return None


def _built_loss_count(model: Any) -> Any:
    """Keras 2 lists its loss ``Mean`` among ``model.metrics`` only once the first train step built it.

    Its ``compiled_loss`` holds the metric from ``compile()`` on, and the
    first step adds to that very object, so reading it at fit start is exact.
    """
    metric = read_attribute(read_attribute(model, "compiled_loss"), "_total_loss_mean")
    if getattr(metric, "name", None) == "loss" and hasattr(metric, "count") and hasattr(metric, "total"):
        return metric.count
    return None


def _read(variable: Any) -> float | None:
    return as_float(variable.numpy() if hasattr(variable, "numpy") else variable)


class LossReader:
    """The batch loss of each execution, and the samples it holds when Keras's count is of samples."""

    __slots__ = ("_batch", "_count", "_last", "counts_samples")

    def __init__(self, model: Any, batch_size_known: bool, builtin_train_step: str) -> None:
        default = _default_train_step(model, builtin_train_step)
        count = _loss_count(model)
        if count is None and not (default and batch_size_known):
            count = _built_loss_count(model)
        # The free path: the default train_step weighs by batch size, known from the adapter.
        self._count = None if default and batch_size_known else count
        self.counts_samples = default and self._count is not None
        trusted = self._count is not None or (default and batch_size_known)
        self._batch: BatchLoss | None = BatchLoss() if trusted else None
        self._last = 0.0

    def new_epoch(self) -> None:
        """Keras resets its metrics before each epoch."""
        self._last = 0.0
        if self._batch is not None:
            self._batch.reset()

    def batch(self, logs: dict[str, Any], samples: int | None) -> tuple[float | None, int | None]:
        """(batch loss, samples counted by Keras) of the execution that produced ``logs``."""
        if self._batch is None:
            return None, None
        running = as_float(logs.get("loss"))
        if running is None:
            return None, None
        if self._count is None:
            return self._batch.update(running, samples or 0), None
        count = _read(self._count)
        if count is None:
            return None, None
        weight, self._last = count - self._last, count
        loss = self._batch.update(running, weight)
        return loss, (int(weight) if self.counts_samples and weight > 0 else None)
