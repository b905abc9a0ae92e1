"""Step and sample accounting, and the buffer that hands them to the SDK.

A training hook sees the index of the last batch of each execution (several
batches when ``steps_per_execution`` > 1). :class:`BatchIndex` turns those
indices into step and sample counts from what the data declares (batch size,
number of batches, size of the partial last batch); :class:`PendingSteps`
keeps the counts, step times and latest batch loss in plain Python until the
next flush (see :mod:`otel_ml._core.pending`), so the per-step path stays cheap.
"""

from __future__ import annotations

from typing import Any

from otel_ml._core.pending import FLUSH_NS, drain, record_many_for
from otel_ml._training.instruments import TrainingInstruments


class BatchIndex:
    """Counts the steps and samples between two end-of-execution batch indices of one epoch.

    Example:
        >>> index = BatchIndex()
        >>> index.declare(batch_size=16, num_batches=7, partial=4)
        >>> index.new_epoch()
        >>> [index.advance(b) for b in (3, 6)]  # two executions of 4 and 3 batches
        [(4, 64), (3, 36)]
    """

    __slots__ = ("_last_end", "batch_size", "num_batches", "partial")

    def __init__(self) -> None:
        self.batch_size: int | None = None
        self.num_batches: int | None = None
        self.partial: int | None = None
        self._last_end = -1

    def declare(self, batch_size: int | None, num_batches: int | None, partial: int | None) -> None:
        """What the data says of itself; None for what it does not say."""
        self.batch_size, self.num_batches, self.partial = batch_size, num_batches, partial

    def new_epoch(self) -> None:
        self._last_end = -1

    def advance(self, batch: int) -> tuple[int, int | None]:
        """Steps and samples since the previous index (samples None when the batch size is unknown)."""
        first = self._last_end + 1
        last = batch if self.num_batches is None else min(batch, self.num_batches - 1)
        n = last - self._last_end
        self._last_end = batch
        if n <= 0 or self.batch_size is None:
            return max(n, 0), None
        total = n * self.batch_size
        if self.partial is not None and self.num_batches is not None and first <= self.num_batches - 1 <= last:
            total -= self.batch_size - self.partial
        return n, total


class PendingSteps:
    """Counts, step times and the latest batch loss, buffered until the next flush."""

    __slots__ = ("_attrs", "_m", "_many", "_train_attrs", "durations", "loss", "next_flush", "samples", "steps")

    def __init__(self, instruments: TrainingInstruments, attrs: dict[str, Any], train_attrs: dict[str, Any]) -> None:
        self._m = instruments
        self._many = record_many_for(instruments.step_duration)  # one attribute lookup per flush, not per step
        self._attrs = attrs
        self._train_attrs = train_attrs
        self.steps = 0
        self.samples = 0
        self.loss: float | None = None
        self.durations: list[float] = []
        self.next_flush = 0

    def add(self, n: int, samples: int | None, per_step: float | None) -> None:
        """Add ``n`` steps (and their time, unless a slow-step span records it)."""
        self.steps += n
        if samples:
            self.samples += samples
        if per_step is not None:
            if n == 1:
                self.durations.append(per_step)
            else:
                self.durations.extend((per_step,) * n)

    def flush(self, now: int) -> None:
        """Hand what is pending to the SDK."""
        self.next_flush = now + FLUSH_NS
        m = self._m
        if self.durations:
            drain(self.durations, m.step_duration.record, self._attrs, many=self._many)
        if self.steps:
            m.steps.add(self.steps, self._attrs)
            self.steps = 0
        if self.samples:
            m.samples.add(self.samples, self._attrs)
            self.samples = 0
        if self.loss is not None:
            m.loss.set(self.loss, self._train_attrs)
            self.loss = None
