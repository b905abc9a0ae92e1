"""Summary values -> metric points: the per-tag entries, the per-run tables that hold them, and batches of events.

One summary write (or one value read back from an event file) becomes a few
``set``/``add`` calls on a cached :class:`TagEntry`: everything that does not
change between two writes of a tag (attribute dicts, which training metric
the tag feeds) is worked out once. Image, text and audio writes are only
counted: their content never reaches telemetry. Non-finite values never
reach a gauge (the SDK would warn on every one): they are counted in
``ml.tensorboard.nonfinite``, and a non-finite loss in
``ml.train.anomalies{ml.anomaly.kind="nan_loss"}`` as well.

:class:`SummaryExporter` keeps the per-run tag tables, with their cap: where
a write finds its entry.

:func:`export_events` takes the events a :class:`~otel_ml._summary._files.FileFollower`
read since its last read. Within that batch only the last value of a tag can
be seen by a metric reader, so each tag costs one gauge ``set`` and one
counter ``add`` per batch, however many steps it holds: the follower's CPU
grows with tags, not with writes. A value that does not fit its plugin (a
string tensor under ``scalars``) is skipped alone, logged once per file: the
valid values around it still go out.
"""

from __future__ import annotations

import logging
import math
import struct
import threading
from collections.abc import Iterable
from typing import Any

from otel_ml._core import semconv as sc
from otel_ml._summary._files import FileFollower
from otel_ml._summary._instruments import SummaryInstruments
from otel_ml._summary._runs import PHASE_WORDS, run_phase

_LOG = logging.getLogger(__name__)

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

_STEP_PREFIXES = ("epoch_", "batch_")
_WELL_KNOWN = {"loss": "loss", "accuracy": "metric", "learning_rate": "learning_rate"}


def _base(name: str) -> str:
    for prefix in _STEP_PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def well_known(tag: str, run: str) -> tuple[str, str, str] | None:
    """``(instrument, phase, base name)`` when ``tag`` is loss/accuracy/learning_rate in an accepted form.

    Accepted, case-insensitively (docs/tf_summary.md lists them): ``<name>``,
    ``epoch_<name>``, ``batch_<name>``, ``<phase>_<name>`` (Keras's ``val_loss``,
    PyTorch Lightning's ``train_loss``), ``<phase>/<name>`` (``train/loss``) and
    ``<name>/<phase>`` (PyTorch's ``Loss/train``). The
    phase comes from the tag, else from the run's last path part (Keras's
    ``train``/``validation`` runs), else it is ``unknown``: never guessed.

    Example:
        >>> well_known("epoch_loss", "logs/validation")
        ('loss', 'validation', 'loss')
        >>> well_known("Accuracy/test", "runs/Jan01")
        ('metric', 'test', 'accuracy')
        >>> well_known("accuracy", "logs/hparam_tuning/run-0")
        ('metric', 'unknown', 'accuracy')
        >>> well_known("train_loss", "lightning_logs/version_0")
        ('loss', 'train', 'loss')
    """
    parts = tag.lower().split("/")
    phase: str | None = None
    if len(parts) == 2:
        first, second = parts
        if first in PHASE_WORDS:
            phase, name = PHASE_WORDS[first], _base(second)
        elif second in PHASE_WORDS:
            phase, name = PHASE_WORDS[second], _base(first)
        else:
            return None
    elif len(parts) == 1:
        name = _base(parts[0])
        prefix, _, rest = name.partition("_")
        if rest and prefix in PHASE_WORDS:
            phase, name = PHASE_WORDS[prefix], _base(rest)
    else:
        return None
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
    """One (run, tag) pair: its cached attributes and how to record a value.

    A well-known tag (:func:`well_known`) also feeds ``ml.train.*`` with the
    Keras path's label keys (``ml.model.name`` and ``ml.optimizer.name`` are
    ``unknown``: an event file names neither), and a non-finite loss outside
    validation and test counts ``ml.train.anomalies{nan_loss}``, as on the
    Keras path, so ``TrainingLossNaN`` fires. Unless a write is ``reported``
    (made by a writer that a Keras ``TensorBoard`` callback created during a fit
    the Keras instrumentor reports, :mod:`otel_ml._core.reported_logdirs`): then
    it stays in ``ml.tensorboard.*`` only. That is decided per write, not per
    tag: the same run and tag written later by the program's own writer feeds
    ``ml.train.*``.
    """

    __slots__ = (
        "_anomaly_attrs",
        "_attrs",
        "_hist_attrs",
        "_m",
        "_run",
        "_train",
        "_train_attrs",
        "_writes_attrs",
        "kind",
    )

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
        self._anomaly_attrs: dict[str, Any] | None = None
        known = well_known(tag, name) if kind == sc.SUMMARY_KIND_SCALAR else None
        if known is not None:
            instrument, phase, base = known
            self._train = getattr(m.train, instrument)
            # The very keys of the Keras path's series of the same name (one name, one key set).
            common = {sc.ML_FRAMEWORK: framework, sc.ML_MODEL_NAME: sc.MODEL_NAME_UNKNOWN, sc.ML_RUN_NAME: name}
            if instrument == "learning_rate":
                self._train_attrs = {**common, sc.ML_OPTIMIZER_NAME: sc.OPTIMIZER_NAME_UNKNOWN}
            else:
                self._train_attrs = {**common, sc.ML_PHASE: phase}
            if instrument == "metric":
                self._train_attrs[sc.ML_METRIC_NAME] = base
            if instrument == "loss" and phase in (sc.PHASE_TRAIN, sc.PHASE_UNKNOWN):
                self._anomaly_attrs = {**common, sc.ML_ANOMALY_KIND: sc.ANOMALY_NAN}

    def record(self, value: Any, step: int | None, reported: bool = False) -> None:
        """Export one write of ``value`` (a NumPy value; ignored for image/text/audio).

        ``reported``: the write is a Keras ``TensorBoard`` callback's whose fit is reported: no ``ml.train.*``.

        Raises:
            ValueError, TypeError: ``value`` is not a number (e.g. a string under the scalars
                plugin); nothing of this write is recorded then.
        """
        if self.kind == sc.SUMMARY_KIND_SCALAR:
            number = float(value)
            finite = math.isfinite(number)
            self.apply(1, number if finite else None, 0 if finite else 1, step, reported)
        else:
            self.apply(1, value if self.kind == sc.SUMMARY_KIND_HISTOGRAM else None, 0, step, reported)

    def apply(self, writes: int, last: Any, nonfinite: int, step: int | None, reported: bool = False) -> None:
        """Export ``writes`` writes at once: only the ``last`` value reaches the gauges.

        Args:
            writes: Writes of this tag (counted in ``ml.tensorboard.writes``).
            last: The last finite scalar (a float) or histogram tensor; None when there is none.
            nonfinite: How many of the scalar writes were NaN or infinite.
            step: The highest step among them.
            reported: They are a Keras ``TensorBoard`` callback's whose fit is reported: no ``ml.train.*``.
        """
        m = self._m
        if last is not None:
            if self.kind == sc.SUMMARY_KIND_SCALAR:
                m.scalar.set(last, self._attrs)
                if self._train is not None and not reported:
                    self._train.set(last, self._train_attrs)
            else:
                self._histogram(last)
        if nonfinite:
            m.nonfinite.add(nonfinite, self._attrs)
            if self._anomaly_attrs is not None and not reported:
                m.train.anomalies.add(nonfinite, self._anomaly_attrs)
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


# --- the per-run tables -----------------------------------------------------------------


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
        self._run_states: dict[str, RunState] = {}
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
            state = self._run_states.get(run)
            if state is None:
                state = self._run_states[run] = RunState(run)
            # A tag reused with another kind replaces its entry; it is still one tag.
            created = TagEntry(self.m, state, tag, kind, self._framework)
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

    def record(self, run: str, tag: str, kind: str, value: Any, step: int | None, reported: bool = False) -> bool:
        """Export one write (``reported``: see :meth:`TagEntry.record`).

        Returns:
            False when the write was dropped by the tag cap.

        Raises:
            ValueError, TypeError: the value does not fit its kind (see :meth:`TagEntry.record`).
        """
        found = self.entry(run, tag, kind)
        if found is None:
            self.drop(run, kind)
            return False
        found.record(value, step, reported)
        return True


# --- batches of events read back -------------------------------------------------------


_FLOAT32, _FLOAT64 = 1, 2  # TensorFlow DataType enum values
_F32, _F64 = struct.Struct("<f"), struct.Struct("<d")


def export_events(exporter: SummaryExporter, follower: FileFollower, run: str, events: Iterable[Any]) -> int:
    """Export every summary value of ``events`` (read by ``follower``) under ``run``.

    Returns:
        The number of values exported (dropped and unusable ones are not).
    """
    pending: dict[TagEntry, list[Any]] = {}  # entry -> [writes, last, nonfinite, highest step]
    kinds = follower.kinds
    reported = follower.claimed_by_keras
    for event in events:
        step = int(event.step)
        for value in event.summary.value:
            if not value.HasField("tensor"):
                continue  # not a v2 summary after migration (e.g. a graph def): nothing to export
            plugin = value.metadata.plugin_data.plugin_name or kinds.get(value.tag, "")
            kind = PLUGIN_KINDS.get(plugin, sc.SUMMARY_KIND_OTHER)
            entry = exporter.entry(run, value.tag, kind)
            if entry is None:
                exporter.drop(run, kind)
                continue
            try:
                data = _content(value.tensor, kind)
            except Exception as exc:  # noqa: BLE001 - one unusable value must not stop the file
                _bad_value(follower, value.tag, plugin, exc)
                continue
            slot = pending.get(entry)
            if slot is None:
                slot = pending[entry] = [0, None, 0, step]
            slot[0] += 1
            if kind != sc.SUMMARY_KIND_SCALAR or math.isfinite(data):
                slot[1] = data
            else:
                slot[2] += 1
            slot[3] = max(slot[3], step)
    for entry, (writes, last, nonfinite, step) in pending.items():
        entry.apply(writes, last, nonfinite, step, reported)
    return sum(slot[0] for slot in pending.values())


def _content(tensor: Any, kind: str) -> Any:
    """A scalar as a float, a histogram as an array, None for kinds only counted."""
    if kind not in CONTENT_KINDS:
        return None
    if kind == sc.SUMMARY_KIND_SCALAR:
        # The common encodings, without building an array (tensorboard's make_ndarray is the fallback).
        content = tensor.tensor_content
        if tensor.dtype == _FLOAT32 and len(content) == 4:
            return _F32.unpack(content)[0]
        if tensor.dtype == _FLOAT64 and len(content) == 8:
            return _F64.unpack(content)[0]
        if tensor.dtype == _FLOAT32 and len(tensor.float_val) == 1 and not content:
            return tensor.float_val[0]
    from tensorboard.util import tensor_util

    array = tensor_util.make_ndarray(tensor)
    return float(array) if kind == sc.SUMMARY_KIND_SCALAR else array


def _bad_value(follower: FileFollower, tag: str, plugin: str, exc: Exception) -> None:
    follower.bad_values += 1
    if follower.bad_values == 1:
        _LOG.warning(
            "otel_ml: %s: a value of tag %r does not fit plugin %r (%s: %s); such values are skipped, the "
            "others exported. Logged once per file.",
            follower.path,
            tag,
            plugin,
            type(exc).__name__,
            exc,
        )
