"""Every run that is not the common case, one named path each: warm-up, slow, in a span, failed.

The common run (successful, past warm-up, not slow, no span around it) never
comes here: :func:`otel_ml.paddle._predictor_run.make_run` appends it to the model's
pending lists, and :meth:`RunHooks.flush` hands those to the SDK in one tight
loop. The paths here record at once, a slow run and a run in a span in their
span's context so that the exemplar carries its trace id.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Final

from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode, Tracer

from otel_ml._core import semconv as sc
from otel_ml._core.guard import report
from otel_ml._core.pending import FLUSH_NS, NO_SPAN, drain, record_many_for
from otel_ml.paddle._facts import PredictorFacts, Registry
from otel_ml.paddle._instruments import PaddleInstruments

SITE: Final = "paddle.Predictor.run"
SPAN_KEY: Final = next(iter(NO_SPAN))
"""The context key the current span is kept under (the only key of ``NO_SPAN``), read with public API only.

The wrapper reads it from the context it already holds instead of calling
``trace.get_current_span()``, which looks the context up again.
"""
_INLINE_CHUNK: Final = 64
"""At most this many items per list are recorded by one run (about 30 µs of SDK work per list).

Bounded on purpose: the run that passes the deadline is some request's; while
some are left, the following runs take the next chunks. Bigger chunks spread
the fixed cost of a hand-over (one aggregation lookup per list) over more runs.
"""


class RunHooks:
    """The named outcome paths and the flush, bound to one instrumentation."""

    def __init__(self, registry: Registry, instruments: PaddleInstruments, tracer: Tracer) -> None:
        self.registry = registry
        self.instruments = instruments
        self._record = instruments.duration.record
        self._record_batch = instruments.batch_size.record
        self._many = record_many_for(instruments.duration)
        self._many_batch = record_many_for(instruments.batch_size)
        self._tracer = tracer
        self.warmup_runs = registry.options.inference_warmup_runs
        self.next_flush = 0
        self._flush_lock = threading.Lock()

    def start_child(self, facts: PredictorFacts, batch: int | None) -> Span:
        """A ``paddle.predictor.run`` span, child of the current span; called only when that one is *recording*.

        A span that is not recording (sampled out, or a no-op tracer) would
        give a child that is not recorded either: the wrapper makes none then.
        The batch size is known before the run: it goes in with the other
        attributes rather than through a later ``set_attribute`` (a lock and a
        validation of its own).
        """
        attributes = facts.span_attrs if batch is None else {**facts.span_attrs, sc.ML_BATCH_SIZE: batch}
        return self._tracer.start_span(sc.SPAN_PADDLE_RUN, attributes=attributes)

    def flush(self, wait: bool = False) -> None:
        """Hand every pending duration and batch size to the SDK.

        ``wait=False`` (a run past the deadline): skip when another thread is
        already flushing, and hand over at most ``_INLINE_CHUNK`` items per
        list so that no single request waits long. ``wait=True`` (a
        collection, uninstrument, exit): wait, and hand over everything.
        """
        self.next_flush = time.perf_counter_ns() + FLUSH_NS
        if not self._flush_lock.acquire(blocking=wait):
            return
        limit = None if wait else _INLINE_CHUNK
        try:
            behind = False
            for model in self.registry.models():
                behind |= drain(model.pending, self._record, model.attrs, limit, self._many)
                behind |= drain(model.pending_batches, self._record_batch, model.batch_attrs, limit, self._many_batch)
            if behind:
                self.next_flush = 0
        finally:
            self._flush_lock.release()

    # --- the named paths -------------------------------------------------------------------

    def warmup(self, facts: PredictorFacts, batch: int | None, span: Span | None, elapsed_ns: int) -> None:
        """A warm-up run: ``ml.inference.warmup=true``, out of the slow-run baseline, never slow."""
        model = facts.model
        self._batch(facts, batch)
        if span is None:
            self._record(elapsed_ns / 1e9, model.warm_attrs, context=NO_SPAN)
        else:
            span.set_attribute(sc.ML_INFERENCE_WARMUP, True)
            self._end_child(span, elapsed_ns / 1e9, model.warm_attrs)

    def slow(self, facts: PredictorFacts, batch: int | None, elapsed_ns: int) -> None:
        """A slow run with no span around it: its span is made after the fact, with its true times."""
        self._batch(facts, batch)
        seconds = elapsed_ns / 1e9
        attrs = facts.model.attrs
        end_ns = time.time_ns()
        if not facts.model.allow_slow_span(end_ns):
            self._record(seconds, attrs, context=NO_SPAN)
            return
        attributes: dict[str, Any] = {
            **facts.span_attrs,
            sc.ML_INFERENCE_RUN_DURATION: seconds,
            sc.ML_SLOW_THRESHOLD: facts.detector.threshold,
        }
        if batch is not None:
            attributes[sc.ML_BATCH_SIZE] = batch
        span = self._tracer.start_span(
            sc.SPAN_PADDLE_RUN, context=NO_SPAN, start_time=end_ns - elapsed_ns, attributes=attributes
        )
        self._record(seconds, attrs, context=trace.set_span_in_context(span))
        span.end(end_time=end_ns)

    def in_span(self, facts: PredictorFacts, batch: int | None, span: Span, elapsed_ns: int, *, slow: bool) -> None:
        """A warm, successful run inside a request: its child span ends here and carries the exemplar."""
        self._batch(facts, batch)
        seconds = elapsed_ns / 1e9
        if slow:
            span.set_attribute(sc.ML_INFERENCE_RUN_DURATION, seconds)
            span.set_attribute(sc.ML_SLOW_THRESHOLD, facts.detector.threshold)
        self._end_child(span, seconds, facts.model.attrs)

    def failed(
        self, facts: PredictorFacts, batch: int | None, span: Span | None, elapsed_ns: int, error: BaseException
    ) -> None:
        """After a run that raised: counted with ``error.type``, never slow, out of the baseline."""
        try:
            next(facts.model.finished)
            runs = facts.runs
            facts.runs = runs + 1
            attrs = facts.model.error_attrs(type(error), runs < self.warmup_runs)
            self._batch(facts, batch)
            if span is None:
                self._record(elapsed_ns / 1e9, attrs, context=NO_SPAN)
                return
            span.set_attribute(sc.ERROR_TYPE, attrs[sc.ERROR_TYPE])
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, type(error).__name__))
            self._end_child(span, elapsed_ns / 1e9, attrs)
        except Exception as exc:  # noqa: BLE001 - never break the caller's inference
            report(SITE, exc)

    # --- shared steps ----------------------------------------------------------------------

    @staticmethod
    def _batch(facts: PredictorFacts, batch: int | None) -> None:
        if batch is not None:
            facts.model.pending_batches.append(batch)

    def _end_child(self, span: Span, seconds: float, attrs: dict[str, Any]) -> None:
        self._record(seconds, attrs, context=trace.set_span_in_context(span))
        span.end()
