"""The served model's quality: what it predicts, and how often it was right once the truth is known.

Latency says nothing about a model that answers fast and wrong. Two counters
let Prometheus compute, over any window: the prediction distribution (from
``ml.model.predictions`` by ``ml.prediction.label``), accuracy (the share of
``ml.model.outcomes`` with ``ml.prediction.correct="true"``) and per-class
recall (the same share by ``ml.truth.label``). Labels are bounded by the
classes declared up front; the ids that pair a prediction with its truth stay
in a bounded map in memory and never reach telemetry.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable, Iterable, Iterator
from typing import Any, Final

from opentelemetry import metrics

from otel_ml._core import semconv as sc
from otel_ml.serving._common import MAX_LABEL_LENGTH, OTHER, Callback, Tally, live_set, meter, model_attributes

MAX_CLASSES: Final = 100


class ModelQuality:
    """Counts a model's predictions by class and, when the truth arrives, its outcomes.

    A prediction is one atomic counter bump (read at collection), plus a
    dict entry under a lock when it carries a request id.

    Args:
        model_name: ``ml.model.name``.
        classes: Every class the model predicts (at most 100); any other label counts as ``_OTHER``.
        version: ``ml.model.version``, or None.
        max_pending: Predictions remembered by request id for a later truth; the oldest go first.
        meter_provider: Default: the global one.

    Raises:
        ValueError: no classes, too many, or a bad name, version or ``max_pending``.

    Example:
        >>> quality = ModelQuality("iris_mlp", classes=[0, 1, 2])
        >>> quality.predicted(2, request_id="r1")
        >>> quality.observed(2, request_id="r1")
        True
        >>> quality.observed(1, request_id="unknown")
        False
    """

    def __init__(
        self,
        model_name: str,
        classes: Iterable[Any],
        version: str | int | None = None,
        max_pending: int = 10_000,
        meter_provider: metrics.MeterProvider | None = None,
    ) -> None:
        self._attrs = model_attributes(model_name, version)
        labels = [str(c)[:MAX_LABEL_LENGTH] for c in classes]
        if not 1 <= len(set(labels)) <= MAX_CLASSES:
            raise ValueError(f"classes has {len(set(labels))} distinct labels: expected 1 to {MAX_CLASSES}")
        if isinstance(max_pending, bool) or not isinstance(max_pending, int) or max_pending < 0:
            raise ValueError(f"max_pending={max_pending!r} is invalid: expected a whole number >= 0")
        self._classes = frozenset(labels)
        self._predicted_attrs = {c: {**self._attrs, sc.ML_PREDICTION_LABEL: c} for c in [*labels, OTHER]}
        self._tallies = {c: Tally() for c in self._predicted_attrs}
        self._pending: OrderedDict[Hashable, str] = OrderedDict()
        self._max_pending = max_pending
        self._lock = threading.Lock()
        m = meter(meter_provider)

        def create(callback: Callback) -> None:
            m.create_observable_counter(
                sc.METRIC_MODEL_PREDICTIONS,
                callbacks=[callback],
                unit=sc.UNIT_PREDICTION,
                description="Predictions served, by predicted class.",
            )

        live_set(meter_provider, sc.METRIC_MODEL_PREDICTIONS, create).add(self)
        self._outcomes = m.create_counter(
            sc.METRIC_MODEL_OUTCOMES,
            unit=sc.UNIT_OUTCOME,
            description="Predictions whose true class arrived, by true class and whether the prediction was right.",
        )

    def label(self, value: Any) -> str:
        """The label ``value`` is counted under: itself if declared, else ``_OTHER``."""
        text = str(value)[:MAX_LABEL_LENGTH]
        return text if text in self._classes else OTHER

    def predicted(self, label: Any, request_id: Hashable | None = None) -> None:
        """Count one prediction; with ``request_id``, remember it for :meth:`observed`."""
        text = str(label)[:MAX_LABEL_LENGTH]
        self._tallies[text if text in self._classes else OTHER].bump()
        if request_id is not None and self._max_pending:
            with self._lock:
                self._pending[request_id] = text
                self._pending.move_to_end(request_id)
                while len(self._pending) > self._max_pending:
                    self._pending.popitem(last=False)

    def observe(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """Predictions so far per label (read at collection); labels never predicted are left out."""
        for label, tally in self._tallies.items():
            value = tally.value()
            if value:
                yield value, self._predicted_attrs[label]

    def observed(self, truth: Any, *, request_id: Hashable | None = None, predicted: Any = None) -> bool:
        """Count the outcome of one prediction, found by ``request_id`` or given as ``predicted``.

        Returns:
            True when counted; False for a request id that is unknown (never
            predicted, already observed, or forgotten as the oldest of more
            than ``max_pending``).
        """
        if request_id is not None:
            with self._lock:
                found = self._pending.pop(request_id, None)
            if found is None:
                return False
            guess = found
        elif predicted is not None:
            guess = str(predicted)[:MAX_LABEL_LENGTH]
        else:
            raise ValueError("observed() needs request_id= (of an earlier predicted()) or predicted=")
        actual = str(truth)[:MAX_LABEL_LENGTH]
        attrs = {
            **self._attrs,
            sc.ML_TRUTH_LABEL: self.label(actual),
            sc.ML_PREDICTION_CORRECT: guess == actual,
        }
        self._outcomes.add(1, attrs)
        return True
