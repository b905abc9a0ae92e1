"""The replacement of ``Predictor.run``: the common run inline, every other outcome one named path.

``run()`` is the hot path: a small model runs in tens of microseconds, and
Python code right after Paddle's C++ work runs on cold caches, so every call
and lookup there costs several times what it costs in a micro-benchmark. The
common run (successful, past warm-up, not slow, no span around it) is handled
inline in :func:`make_run`: its duration and batch size are appended to the
model's plain lists and handed to the SDK in one tight loop
(:meth:`RunRecorder.flush`) at most every ``FLUSH_NS``, and at every
collection (the ``ml.inference.active`` callback drains them first), at
uninstrument and at exit. Every other run takes one of the named paths of
:class:`RunRecorder` (warm-up, slow, in a span, failed), which record at
once, a slow run and a run in a span in their span's context so that the
exemplar carries its trace id. The user's call runs exactly once, outside
any ``try`` of ours that could swallow it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Final

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode, Tracer

from otel_ml._core import announce
from otel_ml._core import semconv as sc
from otel_ml._core.guard import report
from otel_ml._core.pending import FLUSH_NS, NO_EXEMPLAR, drain, record_many_for
from otel_ml.paddle._instruments import PaddleInstruments
from otel_ml.paddle._registry import UNSET, ModelState, PredictorFacts, Registry, batch_input_of

SITE: Final = "paddle.Predictor.run"
SPAN_KEY: Final = next(iter(NO_EXEMPLAR))
"""The context key the current span is kept under (the only key of ``NO_EXEMPLAR``), read with public API only.

The wrapper reads it from the context it already holds instead of calling
``trace.get_current_span()``, which looks the context up again.
"""
_INLINE_CHUNK: Final = 64
"""At most this many items per list are recorded by one run (its SDK cost: ``bench/results/paddle.md``).

Bounded on purpose: the run that passes the deadline is some request's; while
some are left, the following runs take the next chunks. Bigger chunks spread
the fixed cost of a hand-over (one aggregation lookup per list) over more runs.
"""


def make_run(original: Callable[..., Any], recorder: RunRecorder) -> Callable[..., Any]:
    """A plain function to set as ``Predictor.run``; cheaper per call than a wrapt proxy.

    Names are bound once here rather than looked up per call; ``registry.facts``
    stays an attribute lookup so that a test can break it on purpose. What
    the common run does is what it cannot avoid: its C calls (the shape read,
    two counters, two clock reads, the context's ``get``) and three Python
    calls: ``registry.facts``, the current context (``get_current``) and the
    detector's ``observe``.

    Unlike the Keras and tf.summary wrappers this is no
    :func:`~otel_ml._core._importlib_bootstrap_passthrough.passthrough`: Paddle's
    ``run`` is compiled, and a warning raised from C names the innermost
    Python frame whatever its file is called, so no frame of ours could be
    hidden there. A Paddle warning names this frame, as it would under any
    Python wrapper (MLflow's, the contrib instrumentations').
    """
    registry, start_child, flush = recorder.registry, recorder.start_child, recorder.flush
    warmup, slow_run, in_span, failed = recorder.warmup, recorder.slow, recorder.in_span, recorder.failed
    perf, get_current, batch_size = time.perf_counter_ns, otel_context.get_current, _batch_size
    warmup_runs = recorder.warmup_runs
    announce_to, long_call_starting, long_ns = (
        announce.listeners,
        announce.long_call_starting,
        announce.LONG_SECONDS * 1e9,
    )
    long_models: set[ModelState] = set()  # models whose last run was long: their next one is announced

    def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            facts = registry.facts(self)
            read_shape = facts.input_shape
            if args or kwargs or read_shape is None:
                batch = batch_size(facts, self, args or tuple(kwargs.values()))  # run([...]) or run(inputs=[...])
            else:  # the zero-copy form, every run after the first: one C call
                shape = read_shape()
                batch = shape[0] if shape and shape[0] > 0 else None
            # An empty context (any run outside a request) cannot hold a span: skip the lookup.
            context = get_current()
            parent: Any = context.get(SPAN_KEY) if context else None
            span = start_child(facts, batch) if parent is not None and parent.is_recording() else None
            model: ModelState = facts.model
            next(model.started)
            if announce_to and model in long_models:
                long_call_starting()  # published now: while the run holds the GIL nothing else runs
        except Exception as exc:  # noqa: BLE001 - run uninstrumented rather than not at all
            report(SITE, exc)
            return original(self, *args, **kwargs)
        t0 = perf()
        try:
            # No empty keyword dict for pybind11 to search for ``inputs`` when there are no keywords.
            result = original(self, *args, **kwargs) if kwargs else original(self, *args)
        except BaseException as exc:
            failed(facts, batch, span, perf() - t0, exc)
            raise
        t1 = perf()
        try:
            next(model.finished)
            if announce_to:
                (long_models.add if t1 - t0 > long_ns else long_models.discard)(model)
            runs = facts.runs
            facts.runs = runs + 1
            if runs < warmup_runs:  # warm-up runs stay out of the baseline and are never "slow"
                warmup(facts, batch, span, t1 - t0)
            else:
                seconds = (t1 - t0) / 1e9
                slow = facts.detector.observe(seconds)
                if span is not None:
                    in_span(facts, batch, span, t1 - t0, slow=slow)
                elif slow:
                    slow_run(facts, batch, t1 - t0)
                else:
                    model.pending.append(seconds)
                    if batch is not None:
                        model.pending_batches.append(batch)
            if t1 >= recorder.next_flush:
                flush()
        except Exception as exc:  # noqa: BLE001 - never break the caller's inference
            report(SITE, exc)
        return result

    run.__wrapped__ = original  # type: ignore[attr-defined]
    run.__doc__ = getattr(original, "__doc__", None)
    run.__name__ = "run"
    return run


def _batch_size(facts: PredictorFacts, predictor: Any, args: tuple[Any, ...]) -> int | None:
    """The batch input's leading dimension when it is cheap to read; never a guess.

    The batch input is the only input, or the one whose program declares a
    variable leading dimension (``batch_input_of``, looked up at load); a
    predictor that no wrapper saw being made is looked at on its first run,
    and with several inputs and nothing declared, no batch size is recorded.
    """
    try:
        index = facts.batch_input
        if index == UNSET:
            index = facts.batch_input = facts.identity.batch_input = batch_input_of(predictor, None)
        if index is None:
            return None
        if args:
            inputs = args[0]
            shape = inputs[index].shape if isinstance(inputs, (list, tuple)) and len(inputs) > index else None
        else:
            handle = facts.handle
            if handle is None:
                names = predictor.get_input_names()
                if len(names) <= index:
                    return None
                # Cached: a handle reads the live input variable, so later reshapes show.
                handle = facts.handle = predictor.get_input_handle(names[index])
                facts.input_shape = handle.shape
            shape = handle.shape()
        if not shape:
            return None
        first = int(shape[0])
    except Exception:  # noqa: BLE001 - an input we cannot read has no batch size
        return None
    return first if first > 0 else None


class RunRecorder:
    """Records the runs :func:`make_run` does not handle inline, and flushes those it does."""

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
            self._record(elapsed_ns / 1e9, model.warm_attrs, context=NO_EXEMPLAR)
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
            # No span, so no exemplar: with the common runs' batch (a preempted worker of a busy
            # pre-fork server has many slow runs) rather than one SDK measurement each.
            facts.model.pending.append(seconds)
            return
        attributes: dict[str, Any] = {
            **facts.span_attrs,
            sc.ML_INFERENCE_RUN_DURATION: seconds,
            sc.ML_SLOW_THRESHOLD: facts.detector.threshold,
        }
        if batch is not None:
            attributes[sc.ML_BATCH_SIZE] = batch
        span = self._tracer.start_span(
            sc.SPAN_PADDLE_RUN, context=NO_EXEMPLAR, start_time=end_ns - elapsed_ns, attributes=attributes
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
        """After a run that raised: counted with ``error.type``, never slow, out of the baseline and the batches."""
        try:
            next(facts.model.finished)
            # A failed run neither uses up a warm-up slot (the next run still builds the engine) nor
            # adds its batch to the batch-size histogram (no sample was served).
            attrs = facts.model.error_attrs(type(error), facts.runs < self.warmup_runs)
            if span is None:
                self._record(elapsed_ns / 1e9, attrs, context=NO_EXEMPLAR)
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
