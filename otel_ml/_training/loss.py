"""The batch loss from a running mean, and the loss-spike rule.

Frameworks log the loss as a running mean since the epoch began. With ``W``
the weight accumulated so far and ``m`` the mean, the batch loss is
``(m_k * W_k - m_{k-1} * W_{k-1}) / (W_k - W_{k-1})``. It is exact only with
the weights the framework itself used, which the caller must supply (Keras:
the batch size for its default ``train_step``, one per batch for the
"Customizing what happens in fit()" patterns); without them there is no
batch loss, never a guessed one.
"""

from __future__ import annotations

import math

from otel_ml._core.slow import RollingWindow


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
