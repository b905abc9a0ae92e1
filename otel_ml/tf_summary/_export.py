"""Turning one summary write into metric points, with the per-run tag cap.

Everything that does not change between two writes of a tag (attribute
dicts, which training metric the tag feeds) is worked out once, in a
:class:`TagEntry`; a write then costs a few ``set``/``add`` calls. Image,
text and audio writes are only counted: their content never reaches telemetry.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from otel_ml import _semconv as sc
from otel_ml.tf_summary._instruments import SummaryInstruments
from otel_ml.tf_summary._runs import is_validation_run

_LOG = logging.getLogger(__name__)

# TensorBoard plugin name -> ml.summary.kind
PLUGIN_KINDS: dict[str, str] = {
    "scalars": sc.SUMMARY_KIND_SCALAR,
    "histograms": sc.SUMMARY_KIND_HISTOGRAM,
    "images": sc.SUMMARY_KIND_IMAGE,
    "text": sc.SUMMARY_KIND_TEXT,
    "audio": sc.SUMMARY_KIND_AUDIO,
}
_PHASE_PREFIXES = (
    ("train/", sc.PHASE_TRAIN),
    ("val/", sc.PHASE_VALIDATION),
    ("validation/", sc.PHASE_VALIDATION),
    ("val_", sc.PHASE_VALIDATION),
)
_STEP_PREFIXES = ("epoch_", "batch_")
_WELL_KNOWN = {"loss": "loss", "accuracy": "metric", "learning_rate": "learning_rate"}


def well_known(tag: str, run: str) -> tuple[str, str, str] | None:
    """``(instrument, phase, base name)`` when ``tag`` is loss/accuracy/learning_rate or a variant.

    Example:
        >>> well_known("epoch_loss", "logs/validation")
        ('loss', 'validation', 'loss')
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
    if phase is None:
        phase = sc.PHASE_VALIDATION if is_validation_run(run) else sc.PHASE_TRAIN
    return instrument, phase, name


class TagEntry:
    """One (run, tag) pair: its cached attributes and how to record a value."""

    __slots__ = ("_attrs", "_hist_attrs", "_m", "_run_attrs", "_train", "_train_attrs", "_writes_attrs", "kind")

    def __init__(self, m: SummaryInstruments, run: str, tag: str, kind: str, framework: str, run_attrs: dict) -> None:
        self._m = m
        self.kind = kind
        self._run_attrs = run_attrs
        self._attrs = {sc.ML_RUN_NAME: run, sc.ML_SUMMARY_TAG: tag}
        self._writes_attrs = {**self._attrs, sc.ML_SUMMARY_KIND: kind}
        self._hist_attrs = tuple(
            {**self._attrs, sc.ML_SUMMARY_STATISTIC: stat} for stat in ("count", "min", "max", "mean")
        )
        self._train: Any = None
        self._train_attrs: dict[str, Any] = {}
        known = well_known(tag, run) if kind == sc.SUMMARY_KIND_SCALAR else None
        if known is not None:
            instrument, phase, name = known
            self._train = getattr(m.train, instrument)
            self._train_attrs = {sc.ML_FRAMEWORK: framework, sc.ML_RUN_NAME: run}
            if instrument != "learning_rate":
                self._train_attrs[sc.ML_PHASE] = phase
            if instrument == "metric":
                self._train_attrs[sc.ML_METRIC_NAME] = name

    def record(self, value: Any, step: int | None) -> None:
        """Export one write of ``value`` (a NumPy value; ignored for image/text/audio)."""
        m = self._m
        if self.kind == sc.SUMMARY_KIND_SCALAR:
            number = float(value)
            m.scalar.set(number, self._attrs)
            if self._train is not None:
                self._train.set(number, self._train_attrs)
        elif self.kind == sc.SUMMARY_KIND_HISTOGRAM:
            self._histogram(value)
        m.writes.add(1, self._writes_attrs)
        if step is not None:
            m.step.set(step, self._run_attrs)

    def _histogram(self, value: Any) -> None:
        # TensorBoard's histogram tensor: one row [left, right, count] per bucket.
        import numpy as np  # here, so that ``import otel_ml`` stays light

        buckets = np.asarray(value, dtype=np.float64)
        count_attrs, min_attrs, max_attrs, mean_attrs = self._hist_attrs
        if buckets.ndim != 2 or buckets.shape[1] != 3:
            return
        counts = buckets[:, 2]
        total = float(counts.sum())
        self._m.histogram.set(total, count_attrs)
        if total <= 0:
            return  # no data: min/max/mean do not exist, so they are not invented
        nonzero = np.flatnonzero(counts)
        self._m.histogram.set(float(buckets[nonzero[0], 0]), min_attrs)
        self._m.histogram.set(float(buckets[nonzero[-1], 1]), max_attrs)
        centres = (buckets[:, 0] + buckets[:, 1]) * 0.5
        self._m.histogram.set(float((centres * counts).sum() / total), mean_attrs)


class SummaryExporter:
    """Per-run tag tables with a cap; hands out :class:`TagEntry` objects.

    Args:
        instruments: Where values go.
        max_tags: Distinct tags exported per run; more are dropped and counted.
        framework: ``ml.framework`` of the training metrics fed by well-known tags.
    """

    def __init__(self, instruments: SummaryInstruments, max_tags: int, framework: str) -> None:
        self.m = instruments
        self._max = max_tags
        self._framework = framework
        self._runs: dict[str, dict[str, TagEntry]] = {}
        self._run_attrs: dict[str, dict[str, str]] = {}
        self._drop_attrs: dict[tuple[str, str], dict[str, str]] = {}
        self._lock = threading.Lock()

    def entry(self, run: str, tag: str, kind: str) -> TagEntry | None:
        """The entry of (run, tag), created if the run is under its cap; None if dropped."""
        tags = self._runs.get(run)
        if tags is not None:
            found = tags.get(tag)
            if found is not None and found.kind == kind:
                return found
        with self._lock:
            tags = self._runs.setdefault(run, {})
            found = tags.get(tag)
            if found is not None and found.kind == kind:
                return found
            if found is None and len(tags) >= self._max:
                return None
            run_attrs = self._run_attrs.setdefault(run, {sc.ML_RUN_NAME: run})
            # A tag reused with another kind replaces its entry; it is still one tag.
            created = TagEntry(self.m, run, tag, kind, self._framework, run_attrs)
            tags[tag] = created
            return created

    def drop(self, run: str, kind: str) -> None:
        """Count one dropped write; log the first drop of each run."""
        attrs = self._drop_attrs.get((run, kind))
        if attrs is None:
            with self._lock:
                first = not any(key[0] == run for key in self._drop_attrs)
                attrs = self._drop_attrs.setdefault((run, kind), {sc.ML_RUN_NAME: run, sc.ML_SUMMARY_KIND: kind})
            if first:
                _LOG.warning(
                    "otel_ml: run %r wrote more than %d distinct summary tags; writes of further tags are not "
                    "exported (counted in %s). Raise OTEL_ML_TF_SUMMARY_MAX_TAGS if these tags are not "
                    "per-step names. Logged once per run.",
                    run,
                    self._max,
                    sc.METRIC_SUMMARY_DROPPED,
                )
        self.m.dropped.add(1, attrs)

    def record(self, run: str, tag: str, kind: str, value: Any, step: int | None) -> bool:
        """Export one write (the bridge's path; the instrumentor caches the entry itself).

        Returns:
            False when the write was dropped by the tag cap.
        """
        found = self.entry(run, tag, kind)
        if found is None:
            self.drop(run, kind)
            return False
        found.record(value, step)
        return True
