"""Batch loss from Keras's running mean, loss-spike detection, and safe value reading.

Keras logs ``loss`` as the running mean since the epoch began, weighted by
batch size. The batch loss is recovered exactly from two consecutive means:
with ``W`` the samples seen so far and ``m`` the mean,
``batch_loss = (m_k * W_k - m_{k-1} * W_{k-1}) / (W_k - W_{k-1})``.
When the batch size is unknown (generators), every batch is weighted 1,
which is exact for equal batches.
"""

from __future__ import annotations

import math
from typing import Any

from otel_ml._slow import RollingWindow


def as_float(value: Any) -> float | None:
    """A log value as a float, or None when it is not a scalar number.

    Handles ints, floats, numpy scalars, 0-d arrays and scalar tensors;
    strings, None, bools and non-scalar arrays are skipped, never guessed.
    """
    if isinstance(value, float):
        return value
    if value is None or isinstance(value, (bool, str, bytes)):
        return None
    if isinstance(value, int):
        return float(value)
    shape = getattr(value, "shape", ())
    if shape not in ((), None) and len(shape) != 0:
        return None
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return None


class BatchLoss:
    """Turns Keras's running-mean loss into per-batch losses."""

    __slots__ = ("_mean", "_weight")

    def __init__(self) -> None:
        self._mean = 0.0
        self._weight = 0.0

    def reset(self) -> None:
        """Call at each epoch start: Keras resets its running means there."""
        self._mean = 0.0
        self._weight = 0.0

    def update(self, running_mean: float, weight: float) -> float:
        """Return the mean loss of the batches that added ``weight`` to the running mean."""
        total = self._weight + weight
        if weight <= 0:
            return running_mean
        if not math.isfinite(running_mean) or not math.isfinite(self._mean):
            batch = running_mean
        else:
            batch = (running_mean * total - self._mean * self._weight) / weight
        self._mean = running_mean
        self._weight = total
        return batch


class SpikeDetector:
    """Robust loss-spike test: how many scaled MADs above the window's median.

    The median and MAD are recomputed every ``refresh`` losses, so each batch
    costs one comparison and one list store.

    Example:
        >>> d = SpikeDetector(window=16, threshold=6.0, refresh=1)
        >>> any(d.observe(1.0 + 0.01 * (i % 3)) for i in range(16))
        False
        >>> d.observe(50.0)
        True
    """

    __slots__ = ("_median", "_min", "_scale", "_threshold", "_window")

    def __init__(self, window: int, threshold: float, refresh: int = 8) -> None:
        self._window = RollingWindow(window, refresh)
        self._min = min(window, 16)
        self._threshold = threshold
        self._median = math.inf
        self._scale = math.inf

    def observe(self, loss: float) -> bool:
        """Say whether ``loss`` spikes against the baseline, then add it to the baseline."""
        spike = loss > self._median and (loss - self._median) > self._threshold * self._scale
        if self._window.add(loss) and len(self._window.values) >= self._min:
            median = self._window.median()
            deviations = sorted(abs(x - median) for x in self._window.values)
            mad = deviations[len(deviations) // 2]
            self._median = median
            # A perfectly flat window (MAD 0) would make any wobble a spike:
            # floor the scale at 1e-3 of the median's magnitude.
            self._scale = max(1.4826 * mad, 1e-3 * abs(median), 1e-12)
        return spike


def learning_rate(model: Any) -> float | None:
    """The optimizer's current learning rate, or None if it cannot be read.

    Unwraps ``LossScaleOptimizer`` (mixed precision); a ``LearningRateSchedule``
    is evaluated by Keras's own ``learning_rate`` property at the optimizer's
    current iteration. Called at fit start and epoch end only, so the one
    device read it may cost is not paid per step.
    """
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        return None
    optimizer = getattr(optimizer, "inner_optimizer", None) or optimizer
    value = getattr(optimizer, "learning_rate", None)
    if value is None:
        return None
    number = as_float(value)
    if number is None and hasattr(value, "numpy"):
        number = as_float(value.numpy())
    return number
