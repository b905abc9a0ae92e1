"""The spans of one training run (fit, epochs) and its anomaly reports.

Starting or ending a span runs the user's span processors, which may raise:
that must cost the span, never the run's metrics, so every span operation
here is guarded on its own and a failed start yields a non-recording span.
"""

from __future__ import annotations

import logging
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, Status, StatusCode, Tracer

from otel_ml._core import semconv as sc
from otel_ml._core.guard import report

_LOG = logging.getLogger(__name__)


def start_span(tracer: Tracer, name: str, **kwargs: Any) -> Span:
    """``tracer.start_span``, or the invalid (non-recording) span when a processor raises."""
    try:
        return tracer.start_span(name, **kwargs)
    except Exception as exc:  # noqa: BLE001 - a span processor is not ours to trust
        report(f"starting span {name}", exc)
        return trace.INVALID_SPAN


def end_span(span: Span, error: BaseException | None = None, end_time: int | None = None) -> None:
    """Mark ``error`` on ``span`` (when given) and end it; a raising processor is reported."""
    try:
        if error is not None:
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        span.end(end_time=end_time)
    except Exception as exc:  # noqa: BLE001
        report("ending a span", exc)


class RunSpans:
    """The fit span and the current epoch span, with the contexts that parent what happens in them."""

    __slots__ = ("_events", "_tracer", "epoch", "epoch_ctx", "fit", "fit_ctx")

    def __init__(self, tracer: Tracer, fit: Span) -> None:
        self._tracer = tracer
        self.fit = fit
        self.fit_ctx: Context = trace.set_span_in_context(fit)
        self.epoch: Span | None = None
        self.epoch_ctx = self.fit_ctx
        self._events: set[str] = set()

    def start_epoch(self, epoch: int) -> None:
        self.end_epoch()  # an epoch left open (its end hook failed) ends here
        self._events.clear()
        self.epoch = start_span(
            self._tracer, sc.SPAN_KERAS_EPOCH, context=self.fit_ctx, attributes={sc.ML_EPOCH: epoch}
        )
        self.epoch_ctx = trace.set_span_in_context(self.epoch)

    def end_epoch(self, error: BaseException | None = None) -> None:
        span, self.epoch, self.epoch_ctx = self.epoch, None, self.fit_ctx
        if span is not None:
            if error is not None:
                span.set_status(Status(StatusCode.ERROR, type(error).__name__))
            end_span(span)

    def event_once(self, kind: str, attributes: dict[str, Any]) -> None:
        """One ``ml.anomaly`` event per kind per epoch: the counter has the full count."""
        if kind not in self._events and self.epoch is not None:
            self._events.add(kind)
            self.epoch.add_event("ml.anomaly", attributes)

    def finish(self, steps: int, error: BaseException | None) -> None:
        self.end_epoch(error)
        try:
            self.fit.set_attribute(sc.ML_STEP, steps)
        finally:
            end_span(self.fit, error)
