"""Which steps or runs are slow: a fixed threshold, or k times the rolling median.

Shared by the Keras step hook and the Paddle ``run()`` wrapper, so that "slow"
means the same thing for training and inference. The median is recomputed
every ``refresh`` observations, not on each one, so that the hot path does a
constant, small amount of work (one list store and one comparison).
"""

from __future__ import annotations

import math


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

    __slots__ = ("_buf", "_factor", "_fixed", "_i", "_min", "_n", "_refresh", "_since", "threshold")

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
        self._buf: list[float] = []
        self._n = window
        self._i = 0
        self._min = min_samples
        self._refresh = refresh
        self._since = 0
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
        buf = self._buf
        if len(buf) < self._n:
            buf.append(seconds)
        else:
            buf[self._i] = seconds
            self._i = (self._i + 1) % self._n
        self._since += 1
        if self._since >= self._refresh or (len(buf) == self._min and self.threshold == math.inf):
            self._recompute()
        return slow

    def _recompute(self) -> None:
        self._since = 0
        if len(self._buf) < self._min:
            return
        ordered = sorted(self._buf)
        self.threshold = self._factor * ordered[len(ordered) // 2]
