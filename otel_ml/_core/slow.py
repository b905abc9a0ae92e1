"""Which steps or runs are slow: a fixed threshold, or k times the rolling median.

Shared by the Keras step hook and the Paddle ``run()`` wrapper, so that "slow"
means the same thing for training and inference. The median is recomputed
every ``refresh`` observations, not on each one, so that the hot path does a
constant, small amount of work (one list store and one comparison).
"""

from __future__ import annotations

import math


class RollingWindow:
    """The last ``size`` values, and a countdown to the next refresh of statistics over them.

    Shared by the slow-step and loss-spike detectors: each adds one value per
    step and recomputes its median only when :meth:`add` says a refresh is due.
    """

    __slots__ = ("_next", "_since", "_size", "refresh", "values")

    def __init__(self, size: int, refresh: int) -> None:
        self.values: list[float] = []
        self._size = size
        self._next = 0
        self._since = 0
        self.refresh = refresh

    def add(self, value: float) -> bool:
        """Add ``value`` (replacing the oldest once full); True when a refresh is due."""
        values = self.values
        if len(values) < self._size:
            values.append(value)
        else:
            values[self._next] = value
            self._next = (self._next + 1) % self._size
        self._since += 1
        if self._since >= self.refresh:
            self._since = 0
            return True
        return False

    def median(self) -> float:
        """The median of the values kept (the upper one for an even count)."""
        ordered = sorted(self.values)
        return ordered[len(ordered) // 2]


class SlowDetector:
    """Decides whether a duration is slow.

    Args:
        fixed: A fixed threshold in seconds; when set, the rolling median is not used.
        factor: Multiplier of the rolling median (adaptive mode).
        window: How many recent durations form the baseline.
        min_samples: Below this many baseline durations nothing is slow (adaptive mode).
        refresh: Recompute the median every this many observations.

    Example:
        >>> d = SlowDetector(fixed=None, factor=3.0, window=8, min_samples=4, refresh=1)
        >>> [d.observe(0.01) for _ in range(4)]
        [False, False, False, False]
        >>> d.observe(0.5)
        True
    """

    __slots__ = ("_factor", "_fixed", "_min", "_window", "threshold")

    def __init__(
        self,
        fixed: float | None,
        factor: float,
        window: int = 64,
        min_samples: int = 8,
        refresh: int = 16,
    ) -> None:
        self._fixed = fixed
        self._factor = factor
        self._window = RollingWindow(window, refresh)
        self._min = min_samples
        # math.inf until the baseline is known: nothing is slow before that.
        self.threshold: float = fixed if fixed is not None else math.inf

    def observe(self, seconds: float) -> bool:
        """Add ``seconds`` to the baseline and say whether it was slow.

        The decision is made against the threshold *before* this value joins
        the baseline, so one very slow step cannot hide itself.
        """
        slow = seconds > self.threshold
        if self._fixed is not None:
            return slow
        due = self._window.add(seconds)
        count = len(self._window.values)
        if count >= self._min and (due or self.threshold == math.inf):
            self.threshold = self._factor * self._window.median()
        return slow
