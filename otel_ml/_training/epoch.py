"""The values a framework logs at epoch end: validation loss and every other metric, bounded."""

from __future__ import annotations

import math
from typing import Any

from opentelemetry.trace import Span

from otel_ml._core import semconv as sc
from otel_ml._core.guard import report
from otel_ml._training.instruments import TrainingInstruments
from otel_ml._training.values import as_float

_MAX_METRIC_NAMES = 64  # bounds ml.metric.name per run
_SKIPPED = frozenset({"loss", "learning_rate", "lr"})  # the batch loss and the optimizers' own reads cover these


class EpochValues:
    """Puts each numeric epoch log on the epoch span and, when finite, on its gauge."""

    __slots__ = ("_attrs", "_m", "_metric_attrs", "_val_attrs")

    def __init__(self, instruments: TrainingInstruments, attrs: dict[str, Any]) -> None:
        self._m = instruments
        self._attrs = attrs
        self._val_attrs = {**attrs, sc.ML_PHASE: sc.PHASE_VALIDATION}
        self._metric_attrs: dict[tuple[str, str], dict[str, Any]] = {}

    def record(self, logs: dict[str, Any] | None, span: Span | None) -> None:
        """Each key on its own: one odd value costs that value, not the others."""
        for key, raw in list((logs or {}).items()):
            try:
                value = as_float(raw)
                if value is None:
                    continue
                if span is not None:
                    span.set_attribute(sc.ML_LOGS_PREFIX + str(key), value)
                if math.isfinite(value):
                    self._gauge(str(key), value)
            except Exception as exc:  # noqa: BLE001 - never break training
                report("epoch log value", exc)

    def _gauge(self, key: str, value: float) -> None:
        if key in _SKIPPED:
            return
        if key == "val_loss":
            self._m.loss.set(value, self._val_attrs)
            return
        phase, name = (sc.PHASE_VALIDATION, key[4:]) if key.startswith("val_") else (sc.PHASE_TRAIN, key)
        attrs = self._metric_attrs.get((name, phase))
        if attrs is None:
            if len(self._metric_attrs) >= _MAX_METRIC_NAMES:
                return
            attrs = {**self._attrs, sc.ML_METRIC_NAME: name, sc.ML_PHASE: phase}
            self._metric_attrs[(name, phase)] = attrs
        self._m.metric.set(value, attrs)
