"""Non-finite and spiking batch losses: counted, one span event per epoch, one log line per fit."""

from __future__ import annotations

import logging
import math
from typing import Any

from opentelemetry.metrics import Counter

from otel_ml._core import semconv as sc
from otel_ml._training.loss import SpikeDetector
from otel_ml._training.spans import RunSpans

_LOG = logging.getLogger(__name__)


class LossWatch:
    """Checks each trusted batch loss; the spike baseline takes full-size batches only."""

    __slots__ = ("_attrs", "_counter", "_run_name", "_spans", "_spikes", "_warned")

    def __init__(
        self, counter: Counter, attrs: dict[str, Any], spikes: SpikeDetector, spans: RunSpans, run_name: str
    ) -> None:
        self._counter = counter
        self._attrs = {kind: {**attrs, sc.ML_ANOMALY_KIND: kind} for kind in (sc.ANOMALY_NAN, sc.ANOMALY_SPIKE)}
        self._spikes = spikes
        self._spans = spans
        self._run_name = run_name
        self._warned: set[str] = set()

    def check(self, loss: float, step: int, full_batch: bool) -> None:
        """Count ``loss`` if it is non-finite, or a spike of a full-size batch.

        A short batch's mean is over few samples and much noisier than the
        baseline of full batches: it is neither tested nor added.
        """
        if not math.isfinite(loss):
            self._anomaly(sc.ANOMALY_NAN, loss, step)
        elif full_batch and self._spikes.observe(loss):
            self._anomaly(sc.ANOMALY_SPIKE, loss, step)

    def _anomaly(self, kind: str, loss: float, step: int) -> None:
        self._counter.add(1, self._attrs[kind])
        self._spans.event_once(kind, {sc.ML_ANOMALY_KIND: kind, sc.ML_STEP: step, sc.ML_BATCH_LOSS: loss})
        if kind not in self._warned:
            self._warned.add(kind)
            _LOG.warning(
                "otel_ml: %s at step %d of run %r (batch loss %r); counted in ml.train.anomalies, "
                "training continues. Further %s anomalies in this fit are counted, not logged.",
                kind,
                step,
                self._run_name,
                loss,
                kind,
            )
