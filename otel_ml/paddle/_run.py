"""The replacement of ``Predictor.run`` and the wrappers that fill the facts map.

``run()`` is the hot path: a small model runs in tens of microseconds, so the
wrapper does a fixed, small amount of work. Attribute dicts are built once per
model; a span is started only when one is already active (a Flask request
span) or, after the fact, when the run was slow. The user's call runs exactly
once, outside any ``try`` of ours that could swallow it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode, Tracer

from otel_ml import _semconv as sc
from otel_ml._guard import guarded, report
from otel_ml.paddle._facts import PredictorFacts, Registry
from otel_ml.paddle._instruments import PaddleInstruments

# Recording with an empty context: a fast run leaves no exemplar pointing at
# whatever span happens to be current.
_NO_SPAN = otel_context.Context()
_SITE = "paddle.Predictor.run"


class RunHooks:
    """What happens before and after each ``run()``, bound to one instrumentation."""

    def __init__(self, registry: Registry, instruments: PaddleInstruments, tracer: Tracer) -> None:
        self.registry = registry
        self._record = instruments.duration.record
        self._record_batch = instruments.batch_size.record
        self._tracer = tracer
        self._warmup = registry.options.warmup_runs

    def begin(self, predictor: Any, args: tuple[Any, ...]) -> tuple[PredictorFacts, int | None, Span | None]:
        facts = self.registry.facts(predictor)
        batch = _batch_size(facts, predictor, args)
        span = None
        if trace.get_current_span().get_span_context().is_valid:
            span = self._tracer.start_span(sc.SPAN_PADDLE_RUN, attributes=facts.span_attrs)
        facts.model.enter()
        return facts, batch, span

    def end(
        self,
        state: tuple[PredictorFacts, int | None, Span | None],
        elapsed_ns: int,
        error: BaseException | None,
    ) -> None:
        try:
            self._end(*state, elapsed_ns, error)
        except Exception as exc:  # noqa: BLE001 - never break the caller's inference
            report(_SITE, exc)

    def _end(
        self, facts: PredictorFacts, batch: int | None, span: Span | None, elapsed_ns: int, error: BaseException | None
    ) -> None:
        model = facts.model
        model.leave()
        seconds = elapsed_ns / 1e9
        warm = facts.runs < self._warmup
        facts.runs += 1
        if error is not None:
            attrs = model.error_attrs(type(error), warm)
            slow = False
        else:
            attrs = model.warm_attrs if warm else model.attrs
            # Warm-up runs and failures stay out of the baseline and are never "slow".
            slow = not warm and facts.detector.observe(seconds)
        if span is None and slow:
            self._slow_run(facts, batch, seconds, elapsed_ns, attrs)
        elif span is not None:
            self._child_run(facts, batch, span, seconds, attrs, slow, warm, error)
        else:
            self._record(seconds, attrs, context=_NO_SPAN)
        if batch is not None:
            self._record_batch(batch, model.batch_attrs, context=_NO_SPAN)

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
            span.set_attribute(sc.ML_INFERENCE_DURATION, seconds)
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
            self._record(seconds, attrs, context=_NO_SPAN)
            return
        attributes: dict[str, Any] = {
            **facts.span_attrs,
            sc.ML_INFERENCE_DURATION: seconds,
            sc.ML_SLOW_THRESHOLD: facts.detector.threshold,
        }
        if batch is not None:
            attributes[sc.ML_BATCH_SIZE] = batch
        span = self._tracer.start_span(
            sc.SPAN_PADDLE_RUN, context=_NO_SPAN, start_time=end_ns - elapsed_ns, attributes=attributes
        )
        self._record(seconds, attrs, context=trace.set_span_in_context(span))
        span.end(end_time=end_ns)


def make_run(original: Callable[..., Any], hooks: RunHooks) -> Callable[..., Any]:
    """A plain function to set as ``Predictor.run``; cheaper per call than a wrapt proxy."""
    begin, end, perf = hooks.begin, hooks.end, time.perf_counter_ns

    def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            state = begin(self, args)
        except Exception as exc:  # noqa: BLE001 - run uninstrumented rather than not at all
            report(_SITE, exc)
            return original(self, *args, **kwargs)
        t0 = perf()
        try:
            result = original(self, *args, **kwargs)
        except BaseException as exc:
            end(state, perf() - t0, exc)
            raise
        end(state, perf() - t0, None)
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
        if shape is None or len(shape) == 0:
            return None
        first = int(shape[0])
    except Exception:  # noqa: BLE001 - an input we cannot read has no batch size
        return None
    return first if first > 0 else None


def make_create_predictor(original: Callable[..., Any], registry: Registry) -> Callable[..., Any]:
    """Wrap ``create_predictor(config)`` to record the config's facts for the new predictor."""
    register = guarded("paddle.create_predictor")(registry.register)

    def create_predictor(config: Any, *args: Any, **kwargs: Any) -> Any:
        predictor = original(config, *args, **kwargs)
        register(predictor, config)
        return predictor

    create_predictor.__wrapped__ = original  # type: ignore[attr-defined]
    create_predictor.__doc__ = getattr(original, "__doc__", None)
    return create_predictor


def make_clone(original: Callable[..., Any], registry: Registry) -> Callable[..., Any]:
    """Wrap ``Predictor.clone`` so that a clone keeps its parent's model name and flags."""
    derive = guarded("paddle.Predictor.clone")(registry.derive)

    def clone(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = original(self, *args, **kwargs)
        derive(result, self)
        return result

    clone.__wrapped__ = original  # type: ignore[attr-defined]
    clone.__doc__ = getattr(original, "__doc__", None)
    return clone
