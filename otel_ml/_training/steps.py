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

    When ``steps_per_epoch`` differs from the batches the array data holds
    (``cycle``), an epoch no longer starts at the data's first batch: Keras 2
    repeats the data without a break, and Keras 3 carries its iterator over
    to the next epoch and ends an epoch early where the data runs out. Both
    take batch ``k`` of the fit from position ``k mod cycle`` of the data,
    so the short batch is the one at position ``cycle - 1``, whatever the
    epoch (``pos`` counts the fit's batches across epochs).

    Example:
        >>> index = BatchIndex()
        >>> index.declare(batch_size=16, num_batches=7, partial=4)
        >>> index.new_epoch()
        >>> [index.advance(b) for b in (3, 6)]  # two executions of 4 and 3 batches
        [(4, 64), (3, 36)]
        >>> index.declare(batch_size=64, num_batches=3, partial=44, cycle=5)  # steps_per_epoch=3 over 300 rows
        >>> index.new_epoch()
        >>> [index.advance(b) for b in (0, 1, 2)] + [index.new_epoch(), index.advance(0), index.advance(1)][1:]
        [(1, 64), (1, 64), (1, 64), (1, 64), (1, 44)]
    """

    __slots__ = ("_last_end", "batch_size", "cycle", "num_batches", "partial", "pos")

    def __init__(self) -> None:
        self.batch_size: int | None = None
        self.num_batches: int | None = None
        self.partial: int | None = None
        self.cycle: int | None = None
        self.pos = 0
        self._last_end = -1

    def declare(
        self, batch_size: int | None, num_batches: int | None, partial: int | None, cycle: int | None = None
    ) -> None:
        """What the data says of itself; None for what it does not say.

        ``cycle``: the batches of one pass over the data, when an epoch is
        ``num_batches`` steps of another length (see the class docstring).
        """
        self.batch_size, self.num_batches, self.partial, self.cycle = batch_size, num_batches, partial, cycle
        self.pos = 0

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
        if self.cycle is not None:
            first_pos, self.pos = self.pos, self.pos + n
            if self.partial is not None:
                # Positions first_pos .. pos-1 of the repeating data: count the short batches among them.
                shorts = self.pos // self.cycle - first_pos // self.cycle
                total -= shorts * (self.batch_size - self.partial)
            return n, total
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
        # Taken before recorded: a SIGTERM's hand-over may run while this thread is stopped in here.
        steps, self.steps = self.steps, 0
        if steps:
            m.steps.add(steps, self._attrs)
        samples, self.samples = self.samples, 0
        if samples:
            m.samples.add(samples, self._attrs)
        if self.loss is not None:
            m.loss.set(self.loss, self._train_attrs)
            self.loss = None
