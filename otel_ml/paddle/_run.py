"""The replacement of ``Predictor.run`` and the wrappers that fill the facts map.

``run()`` is the hot path: a small model runs in tens of microseconds, and
Python code right after Paddle's C++ work runs on cold caches, so every call
and lookup there costs several times what it costs in a micro-benchmark. The
common run (successful, past warm-up, not slow, no span around it) is handled
inline in :func:`make_run`: its duration and batch size are appended to plain
lists and handed to the SDK in one tight loop at most every ``FLUSH_NS``, and
at every collection (the ``ml.inference.active`` callback drains them first),
at uninstrument and at exit. A run inside a span, a slow run, a warm-up run
and a failed run are recorded at once, the first two in their span's context
so that the exemplar carries its trace id. The user's call runs exactly once,
outside any ``try`` of ours that could swallow it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Final

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode, Tracer

from otel_ml import _semconv as sc
from otel_ml._guard import guarded, report
from otel_ml._pending import FLUSH_NS, NO_SPAN, drain
from otel_ml.paddle._facts import ModelState, PredictorFacts, Registry
from otel_ml.paddle._instruments import PaddleInstruments

_SITE: Final = "paddle.Predictor.run"
_INLINE_CHUNK: Final = 64
"""At most this many items per list are recorded by one run (about 1 ms of SDK work)."""


class RunHooks:
    """Everything but the common run's fast path, bound to one instrumentation."""

    def __init__(self, registry: Registry, instruments: PaddleInstruments, tracer: Tracer) -> None:
        self.registry = registry
        self._record = instruments.duration.record
        self._record_batch = instruments.batch_size.record
        self._tracer = tracer
        self.warmup = registry.options.inference_warmup_runs
        self.next_flush = 0
        self._flush_lock = threading.Lock()

    def start_child(self, facts: PredictorFacts) -> Span | None:
        """A ``paddle.predictor.run`` span when a valid span is current (a Flask request), else None."""
        if not trace.get_current_span().get_span_context().is_valid:
            return None
        return self._tracer.start_span(sc.SPAN_PADDLE_RUN, attributes=facts.span_attrs)

    def flush(self, wait: bool = False) -> None:
        """Hand every pending duration and batch size to the SDK.

        ``wait=False`` (a run past the deadline): skip when another thread is
        already flushing. ``wait=True`` (a collection, uninstrument, exit):
        wait for it, so that nothing recorded before the call is left behind.
        """
        self.next_flush = time.perf_counter_ns() + FLUSH_NS
        if not self._flush_lock.acquire(blocking=wait):
            return
        # A run past the deadline hands over at most _INLINE_CHUNK items per
        # list, so that no single caller waits long (a request's latency);
        # what is left goes to the next runs, or to the collection.
        limit = None if wait else _INLINE_CHUNK
        try:
            behind = False
            for model in self.registry.models():
                behind |= drain(model.pending, self._record, model.attrs, limit)
                behind |= drain(model.pending_batches, self._record_batch, model.batch_attrs, limit)
            if behind:
                self.next_flush = 0
        finally:
            self._flush_lock.release()

    def finish(
        self,
        facts: PredictorFacts,
        batch: int | None,
        span: Span | None,
        elapsed_ns: int,
        error: BaseException | None,
        warm: bool,
        slow: bool,
    ) -> None:
        """Record a run that is not the common case: failed, warm-up, slow or inside a span."""
        model = facts.model
        if batch is not None:
            model.pending_batches.append(batch)
        seconds = elapsed_ns / 1e9
        if error is not None:
            attrs = model.error_attrs(type(error), warm)
        else:
            attrs = model.warm_attrs if warm else model.attrs
        if span is not None:
            self._child_run(facts, batch, span, seconds, attrs, slow, warm, error)
        elif slow:
            self._slow_run(facts, batch, seconds, elapsed_ns, attrs)
        else:
            self._record(seconds, attrs, context=NO_SPAN)

    def failed(
        self, facts: PredictorFacts, batch: int | None, span: Span | None, elapsed_ns: int, error: BaseException
    ) -> None:
        """After a run that raised: counted with ``error.type``, never slow, out of the baseline."""
        try:
            next(facts.model.finished)
            warm = facts.runs < self.warmup
            facts.runs += 1
            self.finish(facts, batch, span, elapsed_ns, error, warm, False)
        except Exception as exc:  # noqa: BLE001 - never break the caller's inference
            report(_SITE, exc)

    def _child_run(
        self,
        facts: PredictorFacts,
        batch: int | None,
        span: Span,
        seconds: float,
        attrs: dict[str, Any],
        slow: bool,
        warm: bool,
        error: BaseException | None,
    ) -> None:
        if batch is not None:
            span.set_attribute(sc.ML_BATCH_SIZE, batch)
        if warm:
            span.set_attribute(sc.ML_INFERENCE_WARMUP, True)
        if slow:
            span.set_attribute(sc.ML_INFERENCE_RUN_DURATION, seconds)
            span.set_attribute(sc.ML_SLOW_THRESHOLD, facts.detector.threshold)
        if error is not None:
            span.set_attribute(sc.ERROR_TYPE, attrs[sc.ERROR_TYPE])
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, type(error).__name__))
        self._record(seconds, attrs, context=trace.set_span_in_context(span))
        span.end()

    def _slow_run(
        self, facts: PredictorFacts, batch: int | None, seconds: float, elapsed_ns: int, attrs: dict[str, Any]
    ) -> None:
        """A slow run with no span around it: make its span after the fact, with its true times."""
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


def make_run(original: Callable[..., Any], hooks: RunHooks) -> Callable[..., Any]:
    """A plain function to set as ``Predictor.run``; cheaper per call than a wrapt proxy.

    Names are bound once here rather than looked up per call; ``registry.facts``
    stays an attribute lookup so that a test can break it on purpose.
    """
    registry, start_child, finish, failed = hooks.registry, hooks.start_child, hooks.finish, hooks.failed
    perf, get_current, batch_size, warmup = time.perf_counter_ns, otel_context.get_current, _batch_size, hooks.warmup

    def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            facts = registry.facts(self)
            batch = batch_size(facts, self, args)
            # An empty context (any run outside a request) cannot hold a span: skip the lookup.
            span = start_child(facts) if get_current() else None
            model: ModelState = facts.model
            next(model.started)
        except Exception as exc:  # noqa: BLE001 - run uninstrumented rather than not at all
            report(_SITE, exc)
            return original(self, *args, **kwargs)
        t0 = perf()
        try:
            result = original(self, *args, **kwargs)
        except BaseException as exc:
            failed(facts, batch, span, perf() - t0, exc)
            raise
        t1 = perf()
        try:
            next(model.finished)
            runs = facts.runs
            facts.runs = runs + 1
            if runs >= warmup:
                seconds = (t1 - t0) / 1e9
                slow = facts.detector.observe(seconds)
                if span is None and not slow:
                    model.pending.append(seconds)
                    if batch is not None:
                        model.pending_batches.append(batch)
                else:
                    finish(facts, batch, span, t1 - t0, None, False, slow)
            else:  # warm-up runs stay out of the baseline and are never "slow"
                finish(facts, batch, span, t1 - t0, None, True, False)
            if t1 >= hooks.next_flush:
                hooks.flush()
        except Exception as exc:  # noqa: BLE001 - never break the caller's inference
            report(_SITE, exc)
        return result

    run.__wrapped__ = original  # type: ignore[attr-defined]
    run.__doc__ = getattr(original, "__doc__", None)
    run.__name__ = "run"
    return run


def _batch_size(facts: PredictorFacts, predictor: Any, args: tuple[Any, ...]) -> int | None:
    """The first input's leading dimension when it is cheap to read; never a guess."""
    try:
        if args:
            inputs = args[0]
            shape = inputs[0].shape if isinstance(inputs, (list, tuple)) and inputs else None
        else:
            handle = facts.handle
            if handle is None:
                names = predictor.get_input_names()
                if not names:
                    return None
                # Cached: a handle reads the live input variable, so later reshapes show.
                handle = facts.handle = predictor.get_input_handle(names[0])
            shape = handle.shape()
        if not shape:
            return None
        first = int(shape[0])
    except Exception:  # noqa: BLE001 - an input we cannot read has no batch size
        return None
    return first if first > 0 else None


def _then(original: Callable[..., Any], hook: Callable[[Any, Any], object], site: str) -> Callable[..., Any]:
    """Call ``original``, then ``hook(result, first argument)`` guarded; the result is returned as it was."""
    safe_hook = guarded(site)(hook)

    def wrapper(first: Any, *args: Any, **kwargs: Any) -> Any:
        result = original(first, *args, **kwargs)
        safe_hook(result, first)
        return result

    wrapper.__wrapped__ = original  # type: ignore[attr-defined]
    wrapper.__doc__ = getattr(original, "__doc__", None)
    wrapper.__name__ = getattr(original, "__name__", "wrapper")
    return wrapper


def make_create_predictor(original: Callable[..., Any], registry: Registry) -> Callable[..., Any]:
    """Wrap ``create_predictor(config)`` to record the config's facts for the new predictor."""
    return _then(original, registry.register, "paddle.create_predictor")


def make_clone(original: Callable[..., Any], registry: Registry) -> Callable[..., Any]:
    """Wrap ``Predictor.clone`` so that a clone keeps its parent's model name and flags."""
    return _then(original, registry.derive, "paddle.Predictor.clone")
