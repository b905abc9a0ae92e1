"""One summary write -> metric points: the cached per-tag entry.

Everything that does not change between two writes of a tag (attribute
dicts, which training metric the tag feeds) is worked out once, in a
:class:`TagEntry`; a write then costs a few ``set``/``add`` calls. Image,
text and audio writes are only counted: their content never reaches telemetry.
Non-finite values never reach a gauge (the SDK would warn on every one):
they are counted in ``ml.tensorboard.nonfinite``.
"""

from __future__ import annotations

import math
from typing import Any

from otel_ml._core import semconv as sc
from otel_ml._summary._instruments import SummaryInstruments
from otel_ml._summary._runs import run_phase

# TensorBoard plugin name -> ml.summary.kind
PLUGIN_KINDS: dict[str, str] = {
    "scalars": sc.SUMMARY_KIND_SCALAR,
    "histograms": sc.SUMMARY_KIND_HISTOGRAM,
    "images": sc.SUMMARY_KIND_IMAGE,
    "text": sc.SUMMARY_KIND_TEXT,
    "audio": sc.SUMMARY_KIND_AUDIO,
}
CONTENT_KINDS = frozenset({sc.SUMMARY_KIND_SCALAR, sc.SUMMARY_KIND_HISTOGRAM})
"""The kinds whose value is exported; the others are only counted."""

_PHASE_PREFIXES = (
    ("train/", sc.PHASE_TRAIN),
    ("val/", sc.PHASE_VALIDATION),
    ("validation/", sc.PHASE_VALIDATION),
    ("eval/", sc.PHASE_VALIDATION),
    ("test/", sc.PHASE_TEST),
    ("val_", sc.PHASE_VALIDATION),
)
_STEP_PREFIXES = ("epoch_", "batch_")
_WELL_KNOWN = {"loss": "loss", "accuracy": "metric", "learning_rate": "learning_rate"}


def well_known(tag: str, run: str) -> tuple[str, str, str] | None:
    """``(instrument, phase, base name)`` when ``tag`` is loss/accuracy/learning_rate or a variant.

    Example:
        >>> well_known("epoch_loss", "logs/validation")
        ('loss', 'validation', 'loss')
        >>> well_known("accuracy", "logs/test")
        ('metric', 'test', 'accuracy')
    """
    name, phase = tag, None
    for prefix, prefix_phase in _PHASE_PREFIXES:
        if name.startswith(prefix):
            name, phase = name[len(prefix) :], prefix_phase
            break
    for prefix in _STEP_PREFIXES:
        if name.startswith(prefix):
            name = name[len(prefix) :]
            break
    instrument = _WELL_KNOWN.get(name)
    if instrument is None:
        return None
    return instrument, phase or run_phase(run), name


class RunState:
    """What a run's tags share: its attributes and the highest step seen."""

    __slots__ = ("attrs", "step")

    def __init__(self, run: str) -> None:
        self.attrs = {sc.ML_RUN_NAME: run}
        self.step: int | None = None


class TagEntry:
    """One (run, tag) pair: its cached attributes and how to record a value."""

    __slots__ = ("_attrs", "_hist_attrs", "_m", "_run", "_train", "_train_attrs", "_writes_attrs", "kind")

    def __init__(self, m: SummaryInstruments, run: RunState, tag: str, kind: str, framework: str) -> None:
        self._m = m
        self.kind = kind
        self._run = run
        name = run.attrs[sc.ML_RUN_NAME]
        self._attrs = {sc.ML_RUN_NAME: name, sc.ML_SUMMARY_TAG: tag}
        self._writes_attrs = {**self._attrs, sc.ML_SUMMARY_KIND: kind}
        self._hist_attrs = tuple(
            {**self._attrs, sc.ML_SUMMARY_STATISTIC: stat} for stat in ("count", "min", "max", "mean")
        )
        self._train: Any = None
        self._train_attrs: dict[str, Any] = {}
        known = well_known(tag, name) if kind == sc.SUMMARY_KIND_SCALAR else None
        if known is not None:
            instrument, phase, base = known
            self._train = getattr(m.train, instrument)
            self._train_attrs = {sc.ML_FRAMEWORK: framework, sc.ML_RUN_NAME: name}
            if instrument != "learning_rate":
                self._train_attrs[sc.ML_PHASE] = phase
            if instrument == "metric":
                self._train_attrs[sc.ML_METRIC_NAME] = base

    def record(self, value: Any, step: int | None) -> None:
        """Export one write of ``value`` (a NumPy value; ignored for image/text/audio).

        Raises:
            ValueError, TypeError: ``value`` is not a number (e.g. a string under the scalars
                plugin); nothing of this write is recorded then.
        """
        if self.kind == sc.SUMMARY_KIND_SCALAR:
            number = float(value)
            finite = math.isfinite(number)
            self.apply(1, number if finite else None, 0 if finite else 1, step)
        else:
            self.apply(1, value if self.kind == sc.SUMMARY_KIND_HISTOGRAM else None, 0, step)

    def apply(self, writes: int, last: Any, nonfinite: int, step: int | None) -> None:
        """Export ``writes`` writes at once: only the ``last`` value reaches the gauges.

        Args:
            writes: Writes of this tag (counted in ``ml.tensorboard.writes``).
            last: The last finite scalar (a float) or histogram tensor; None when there is none.
            nonfinite: How many of the scalar writes were NaN or infinite.
            step: The highest step among them.
        """
        m = self._m
        if last is not None:
            if self.kind == sc.SUMMARY_KIND_SCALAR:
                m.scalar.set(last, self._attrs)
                if self._train is not None:
                    self._train.set(last, self._train_attrs)
            else:
                self._histogram(last)
        if nonfinite:
            m.nonfinite.add(nonfinite, self._attrs)
        m.writes.add(writes, self._writes_attrs)
        run = self._run
        if step is not None and (run.step is None or step > run.step):
            run.step = step
            m.step.set(step, run.attrs)

    def _histogram(self, value: Any) -> None:
        # TensorBoard's histogram tensor: one row [left, right, count] per bucket.
        import numpy as np  # here, so that ``import otel_ml`` stays light

        buckets = np.asarray(value, dtype=np.float64)
        if buckets.ndim != 2 or buckets.shape[1] != 3:
            return
        count_attrs, min_attrs, max_attrs, mean_attrs = self._hist_attrs
        counts = buckets[:, 2]
        total = float(counts.sum())
        gauge = self._m.distribution
        if not math.isfinite(total):
            return
        gauge.set(total, count_attrs)
        if total <= 0:
            return  # no data: min/max/mean do not exist, so they are not invented
        nonzero = np.flatnonzero(counts)
        centres = (buckets[:, 0] + buckets[:, 1]) * 0.5
        for number, attrs in (
            (float(buckets[nonzero[0], 0]), min_attrs),
            (float(buckets[nonzero[-1], 1]), max_attrs),
            (float((centres * counts).sum() / total), mean_attrs),
        ):
            if math.isfinite(number):
                gauge.set(number, attrs)
