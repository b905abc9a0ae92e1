"""The batch loss: from Keras's running mean, with Keras's own weights, and the loss-spike rule.

Frameworks log the loss as a running mean since the epoch began. With ``W``
the weight accumulated so far and ``m`` the mean, the batch loss is
``(m_k * W_k - m_{k-1} * W_{k-1}) / (W_k - W_{k-1})`` (:class:`BatchLoss`). It
is exact only with the weights the framework itself used; without them there
is no batch loss, never a guessed one.

Which weights (:class:`LossReader`): Keras (3, and 2 alike) logs ``loss`` as
the ``result()`` of the ``Mean`` metric named "loss" among ``model.metrics``
(the :class:`~otel_ml._training.flavour.Flavour` says where to find it before
the first step, and how to read its variables). Its ``count`` grows by the
batch size under the default ``train_step``, and by one per batch (or by the
batch size, when a per-sample loss vector is passed) in the custom
``train_step`` patterns of the guide "Customizing what happens in fit()", and
by one per batch in Keras 2's built-in ``train_step`` when no loss was
compiled (losses from ``add_loss`` only; the samples then come from the
data, never from this count): the growth of that ``count`` is the exact
weight of each batch.

Reading a variable costs an eager op, too much for every step (figures in
``bench/results/keras.md``). So the weight is read only when it is not known
for free (the default ``train_step`` on data of declared batch size needs no
read at all), and then not per step: the running means are kept, and
``count`` is read at the first step (to learn the weight one step adds), at
each flush (at most every 100 ms), at the last two executions of an epoch of
known length, and before validation or at epoch end. When the growth over the
steps since the last read is what full batches add, each step's loss is
exact; when it is not (a short batch inside the group), only the group's mean
is known and no per-batch loss is given for it (a non-finite running mean
still gives a non-finite batch loss, whatever the weights). Where no such
metric exists the batch loss is absent: the logged value has no weight
otel_ml could trust.

The logged value is not read per step either: Keras 2 logs tensors, and
converting one right after the step is the first eager op there, several
times dearer on the training thread than the same read a little later. The
reader keeps references to the logged values and reads them when it settles,
at the same points as ``count`` (and at each flush on the free path too), and
when a fit that raised ends: the figures are the same, known up to 100 ms later.

:class:`SpikeDetector` is the spike rule that
:class:`~otel_ml._training.fit.LossWatch` applies to each trusted batch loss.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from otel_ml._core.slow import RollingWindow
from otel_ml._training.flavour import Flavour, as_float, read_attribute


class BatchLoss:
    """Turns a running-mean loss into per-batch losses, given the true weights."""

    __slots__ = ("_mean", "_weight")

    def __init__(self) -> None:
        self._mean = 0.0
        self._weight = 0.0

    def reset(self) -> None:
        """Call at each epoch start: the framework resets its running means there."""
        self._mean = 0.0
        self._weight = 0.0

    def update(self, running_mean: float, weight: float) -> float | None:
        """The mean loss of the batches that added ``weight`` to the running mean, or None.

        Example:
            >>> b = BatchLoss()
            >>> b.update(2.0, 16), b.update(3.0, 4)  # second batch: (3*20 - 2*16) / 4
            (2.0, 7.0)
        """
        if weight <= 0:
            return None
        total = self._weight + weight
        if not math.isfinite(running_mean) or not math.isfinite(self._mean):
            batch = running_mean  # a non-finite mean: the batch is non-finite too
        else:
            batch = (running_mean * total - self._mean * self._weight) / weight
        self._mean = running_mean
        self._weight = total
        return batch


# --- the weights Keras averaged with -------------------------------------------------------


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
        # The default train_step weighs by samples, except Keras 2 with no compiled loss (by 1 per batch).
        by_samples = default and not flavour.weighs_batches(model)
        # The free path: the default train_step weighs by batch size, known from the adapter.
        free = by_samples and batch_size_known
        self._count = None if free else count
        self.counts_samples = by_samples and self._count is not None
        self.counted = 0  # samples Keras counted since the caller last took them (counts_samples only)
        trusted = self._count is not None or free
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


# --- the spike rule ------------------------------------------------------------------------


class SpikeDetector:
    """Loss spike: far above the rolling median, in robust units of the loss's own noise.

    For positive losses the test is made on ``log(loss)``: a batch loss is a
    spike when its log exceeds the window's median log by more than
    ``threshold`` scaled MADs of the logs *and* by ``log(2)`` (the loss at
    least doubled). Batch losses are skewed (a mean squared error over a
    small batch is a scaled chi-square, with a long right tail); in log space
    that tail is short, so small-batch noise never counts, while a broken
    batch or a learning-rate blow-up (tens to thousands of times the usual
    loss) still does. Losses that can be zero or negative use the same test
    on the loss itself, with the median's magnitude as the floor. The limit
    is recomputed every ``refresh`` losses, so each batch costs one
    comparison and one list store.

    Example:
        >>> d = SpikeDetector(window=16, threshold=6.0, refresh=1)
        >>> any(d.observe(1.0 + 0.01 * (i % 3)) for i in range(16))
        False
        >>> d.observe(50.0)
        True
    """

    __slots__ = ("_limit", "_min", "_threshold", "_window")

    def __init__(self, window: int, threshold: float, refresh: int = 16) -> None:
        self._window = RollingWindow(window, refresh)
        self._min = min(window, 32)  # a baseline of fewer losses misjudges their spread
        self._threshold = threshold
        self._limit = math.inf

    def observe(self, loss: float) -> bool:
        """Say whether ``loss`` spikes against the baseline, then add it to the baseline."""
        spike = loss > self._limit
        if self._window.add(loss) and len(self._window.values) >= self._min:
            self._limit = self._new_limit(self._window.values)
        return spike

    def _new_limit(self, values: list[float]) -> float:
        positive = min(values) > 0
        points = sorted(map(math.log, values) if positive else values)
        middle = len(points) // 2
        median = points[middle]
        mad = sorted([abs(x - median) for x in points])[middle]
        if positive:
            return math.exp(median + max(self._threshold * 1.4826 * mad, _LOG2))
        return median + max(self._threshold * 1.4826 * mad, abs(median), 1e-12)


_LOG2 = math.log(2.0)
