"""The replacement of ``Predictor.run``: the hot path, small and visibly cheap.

``run()`` is the hot path: a small model runs in tens of microseconds, and
Python code right after Paddle's C++ work runs on cold caches, so every call
and lookup there costs several times what it costs in a micro-benchmark. The
common run (successful, past warm-up, not slow, no span around it) is handled
inline in :func:`make_run`: its duration and batch size are appended to plain
lists and handed to the SDK in one tight loop at most every ``FLUSH_NS``, and
at every collection (the ``ml.inference.active`` callback drains them first),
at uninstrument and at exit. Every other run takes one of the named paths of
:class:`otel_ml.paddle._outcomes.RunHooks`. The user's call runs exactly once,
outside any ``try`` of ours that could swallow it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from opentelemetry import context as otel_context

from otel_ml._core.guard import report
from otel_ml.paddle._facts import ModelState, PredictorFacts
from otel_ml.paddle._outcomes import SITE, SPAN_KEY, RunHooks


def make_run(original: Callable[..., Any], hooks: RunHooks) -> Callable[..., Any]:
    """A plain function to set as ``Predictor.run``; cheaper per call than a wrapt proxy.

    Names are bound once here rather than looked up per call; ``registry.facts``
    stays an attribute lookup so that a test can break it on purpose. What
    the common run does is what it cannot avoid: its C calls (the shape read,
    two counters, two clock reads) and no Python call but ``registry.facts``
    and the detector's.
    """
    registry, start_child, flush = hooks.registry, hooks.start_child, hooks.flush
    warmup, slow_run, in_span, failed = hooks.warmup, hooks.slow, hooks.in_span, hooks.failed
    perf, get_current, batch_size = time.perf_counter_ns, otel_context.get_current, _batch_size
    warmup_runs = hooks.warmup_runs

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
            if t1 >= hooks.next_flush:
                flush()
        except Exception as exc:  # noqa: BLE001 - never break the caller's inference
            report(SITE, exc)
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
                facts.input_shape = handle.shape
            shape = handle.shape()
        if not shape:
            return None
        first = int(shape[0])
    except Exception:  # noqa: BLE001 - an input we cannot read has no batch size
        return None
    return first if first > 0 else None
