"""Slow steps: the span made after the fact for each one, and the slowest-steps summary line.

Only a *slow* step gets a span, made with the step's true start and end; its
duration is recorded inside that span so that the histogram exemplar carries
its trace id. The three slowest are named, with their trace ids, in the one
INFO line logged when the run ends.
"""

from __future__ import annotations

import heapq
import logging
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.metrics import Histogram
from opentelemetry.trace import Tracer

from otel_ml._core import semconv as sc
from otel_ml._core.slow import SlowDetector
from otel_ml._training.spans import end_span, start_span

_LOG = logging.getLogger(__name__)
_SUMMARY_SLOWEST = 3


class SlowSteps:
    """Decides which executions are slow, records them under a span, and keeps the slowest three."""

    __slots__ = ("_attrs", "_detector", "_executions", "_histogram", "_run_name", "_tracer", "_warmup", "slowest")

    def __init__(
        self,
        tracer: Tracer,
        histogram: Histogram,
        attrs: dict[str, Any],
        run_name: str,
        detector: SlowDetector,
        warmup: int,
    ) -> None:
        self._tracer = tracer
        self._histogram = histogram
        self._attrs = attrs
        self._run_name = run_name
        self._detector = detector
        self._warmup = warmup
        self._executions = 0
        self.slowest: list[tuple[float, int, str]] = []  # min-heap of (seconds, step, trace id)

    def is_slow(self, per_step: float) -> bool:
        """Whether this execution's per-step time is slow (never during warm-up)."""
        warm = self._executions < self._warmup
        self._executions += 1
        return not warm and self._detector.observe(per_step)

    def record(self, parent: Context, start_ns: int, elapsed_ns: int, n: int, attributes: dict[str, Any]) -> None:
        """Record the ``n`` step durations of a slow execution inside its own ``keras.train_step`` span."""
        per_step = elapsed_ns / n / 1e9
        attributes[sc.ML_STEP_DURATION] = per_step
        attributes[sc.ML_SLOW_THRESHOLD] = self._detector.threshold
        attributes[sc.ML_RUN_NAME] = self._run_name
        if n > 1:
            attributes[sc.ML_STEPS_PER_EXECUTION] = n
        span = start_span(
            self._tracer, sc.SPAN_KERAS_TRAIN_STEP, context=parent, start_time=start_ns, attributes=attributes
        )
        ctx = trace.set_span_in_context(span)
        for _ in range(n):
            self._histogram.record(per_step, self._attrs, context=ctx)
        end_span(span, end_time=start_ns + elapsed_ns)
        trace_id = format(span.get_span_context().trace_id, "032x")
        entry = (per_step, attributes[sc.ML_STEP], trace_id)
        if len(self.slowest) < _SUMMARY_SLOWEST:
            heapq.heappush(self.slowest, entry)
        else:
            heapq.heappushpop(self.slowest, entry)

    def log_summary(self, steps: int, total_ns: int) -> None:
        """The one INFO line of a finished run: step count, mean step time, slowest steps."""
        if not steps:
            return
        slowest = ", ".join(
            f"step {step} {seconds * 1000:.1f} ms trace_id={tid}"
            for seconds, step, tid in sorted(self.slowest, reverse=True)
        )
        _LOG.info(
            "otel_ml: run %r trained %d steps, mean step %.2f ms; slowest: %s",
            self._run_name,
            steps,
            total_ns / steps / 1e6,
            slowest or "none over the slow-step threshold",
        )
