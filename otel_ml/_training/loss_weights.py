"""Which weights Keras's logged ``loss`` was averaged with, so that the batch loss is exact.

Keras (3, and 2 alike) logs ``loss`` as the ``result()`` of the ``Mean``
metric named "loss" among ``model.metrics`` (the :class:`Flavour` says where
to find it before the first step, and how to read its variables). Its
``count`` grows by the batch size under the default ``train_step``, and by one per batch (or by the batch size, when a
per-sample loss vector is passed) in the custom ``train_step`` patterns of
the guide "Customizing what happens in fit()": the growth of that ``count``
is the exact weight of each batch.

Reading a variable costs an eager op (60-180 µs on a busy CPU), too much for
every step. So the weight is read only when it is not known for free (the
default ``train_step`` on data of declared batch size needs no read at all),
and then not per step: the running means are kept, and ``count`` is read at
the first step (to learn the weight one step adds), at each flush (at most
every 100 ms), at the last two executions of an epoch of known length, and
before validation or at epoch end. When the growth over the steps since the
last read is what full batches add, each step's loss is exact; when it is
not (a short batch inside the group), only the group's mean is known and no
per-batch loss is given for it (a non-finite running mean still gives a
non-finite batch loss, whatever the weights). Where no such metric exists the
batch loss is absent: the logged value has no weight otel_ml could trust.

The logged value is not read per step either: Keras 2 logs tensors, and
converting one right after the step is the first eager op there (35-50 µs of
the training thread on a busy CPU, where the same read later costs 3). The
reader keeps references to the logged values and reads them when it settles,
at the same points as ``count`` (and at each flush on the free path too), and
when a fit that raised ends: the figures are the same, known up to 100 ms later.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from otel_ml._training.flavour import Flavour
from otel_ml._training.loss import BatchLoss
from otel_ml._training.values import as_float, read_attribute


def _default_train_step(model: Any, builtin: str) -> bool:
    for cls in type(model).__mro__:
        if "train_step" in cls.__dict__:
            return cls.__module__.startswith(builtin)
    return False


def loss_mean_count(metric: Any) -> Any:
    """``metric.count`` when ``metric`` is a ``Mean`` named "loss" (the one behind the logged value), else None."""
    if getattr(metric, "name", None) == "loss" and hasattr(metric, "count") and hasattr(metric, "total"):
        return metric.count
    return None


def metrics_loss_count(model: Any) -> Any:
    """The ``count`` of the ``Mean`` named "loss" among ``model.metrics``, or None.

    Keras 3 lists its loss tracker there from ``compile()`` on; a custom
    ``train_step`` lists its own tracker there through ``metrics``.
    """
    for metric in read_attribute(model, "metrics") or ():
        count = loss_mean_count(metric)
        if count is not None:
            return count
    return None


Loss = tuple[int, float, float]  # (0-based step, batch loss, weight per step)
_Logged = tuple[int, Any, int, int | None]  # (0-based step, logged loss as Keras gave it, steps, samples)
_NONE: tuple[Loss, ...] = ()
_CHANGES: dict[type, bool] = {}  # per type of logged value: a variable, whose value changes after the step


class LossReader:
    """The batch losses of a fit, and the samples Keras counted when its ``count`` is of samples."""

    __slots__ = ("_batch", "_count", "_last", "_logged", "_read", "_unit", "counted", "counts_samples")

    def __init__(
        self, model: Any, batch_size_known: bool, flavour: Flavour, read: Callable[[Any], float | None]
    ) -> None:
        default = _default_train_step(model, flavour.builtin_train_step)
        count = flavour.loss_count(model)
        self._read = read  # the flavour's reader for this model (JAX: the trainer's live state)
        # The free path: the default train_step weighs by batch size, known from the adapter.
        self._count = None if default and batch_size_known else count
        self.counts_samples = default and self._count is not None
        self.counted = 0  # samples Keras counted since the caller last took them (counts_samples only)
        trusted = self._count is not None or (default and batch_size_known)
        self._batch: BatchLoss | None = BatchLoss() if trusted else None
        self._last = 0.0
        self._unit: float | None = None  # the weight one full step adds, learnt at the first read
        self._logged: list[_Logged] = []  # the executions since the last settle, values not yet read

    def new_epoch(self) -> None:
        """Keras resets its metrics before each epoch (the caller settled the last one's losses)."""
        self._last = 0.0
        self._logged.clear()
        if self._batch is not None:
            self._batch.reset()

    def step(self, logs: dict[str, Any], n: int, samples: int | None, step: int, settle: bool) -> Sequence[Loss]:
        """Keep one execution's logged loss; return the losses known once settled (when ``settle``).

        Samples Keras counted go to ``counted``. The count is also read at the
        first step, to learn the weight one step adds.
        """
        if self._batch is None:
            return _NONE
        logged = logs.get("loss")
        if logged is None:
            return _NONE
        changes = _CHANGES.get(type(logged))
        if changes is None:
            changes = _CHANGES[type(logged)] = hasattr(logged, "assign")
        if changes:
            logged = as_float(logged)  # a variable (a custom train_step's, run eagerly) changes: read it now
        self._logged.append((step, logged, n, samples))
        return self.settle() if settle or (self._unit is None and self._count is not None) else _NONE

    def settle(self, ending: bool = False) -> Sequence[Loss]:
        """Read the logged values kept, and Keras's ``count`` once, and resolve those steps.

        ``ending``: the fit raised. Keras may have counted a step after the
        last one kept (a callback before ours raised in its batch end), so the
        count is trusted only when it adds up to whole steps of the known size.
        """
        if self._batch is None or not self._logged:
            return _NONE
        logged, self._logged = self._logged, []
        if self._count is None:
            return _weighed_by_samples(self._batch, logged)
        pending = [(step, running, n) for step, value, n, _ in logged if (running := as_float(value)) is not None]
        if not pending:
            return _NONE
        count = self._read(self._count)
        if count is None:
            return _NONE
        total, self._last = count - self._last, count
        steps = sum(n for _, _, n in pending)
        unit = self._unit
        whole = unit is not None and abs(total - steps * unit) < 0.5
        if ending and not whole:
            # Keras may have counted a step whose batch end never reached us: no weight here is sure.
            return _non_finite(pending)
        if self.counts_samples and total > 0:
            self.counted += int(total)
        if len(pending) == 1 and total > 0:
            self._unit = max(unit or 0.0, total / steps)
            weights = [total]
        elif unit is not None and whole:
            weights = [n * unit for _, _, n in pending]
        else:
            # A short batch somewhere in the group: only the group's mean is known.
            self._batch.update(pending[-1][1], total)
            return _non_finite(pending)
        losses = []
        for (step, running, n), weight in zip(pending, weights, strict=True):
            loss = self._batch.update(running, weight)
            if loss is not None:
                losses.append((step, loss, weight / n))
        return losses


def _weighed_by_samples(batch: BatchLoss, logged: list[_Logged]) -> Sequence[Loss]:
    """The default ``train_step`` on data of declared batch size: each execution weighs its samples."""
    losses = []
    for step, value, n, samples in logged:
        running = as_float(value)
        if running is None or not samples:
            continue
        loss = batch.update(running, samples)
        if loss is not None:
            losses.append((step, loss, samples / n))
    return losses


def _non_finite(pending: list[tuple[int, float, int]]) -> Sequence[Loss]:
    """The steps whose running mean is not finite: their batch loss is not finite, whatever the weights."""
    return [(step, running, 0.0) for step, running, _ in pending if not math.isfinite(running)]
