"""The ``create_predictor`` and ``clone`` wrappers: who the new predictor is, and how long loading took.

Loading a model (reading the program, optimising the graph, building engines)
can take seconds and happens at start-up and on every scale-up, so it gets its
own histogram, ``ml.model.load.duration``, with the model's name and version;
a load that raises is counted with ``error.type`` and the exception reaches
the caller unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Final

from opentelemetry.metrics import Histogram

from otel_ml._core import semconv as sc
from otel_ml._core.guard import guarded
from otel_ml._core.pending import NO_EXEMPLAR
from otel_ml.paddle._identity import Identity
from otel_ml.paddle._registry import ModelState, PredictorFacts, Registry

MAX_LOAD_ERROR_TYPES: Final = 16


class LoadTimer:
    """Records ``ml.model.load.duration`` for one instrumentation; error types bounded."""

    def __init__(self, histogram: Histogram) -> None:
        self._record = histogram.record
        self._error_names: set[str] = set()

    def loaded(self, facts: PredictorFacts, elapsed_ns: int) -> None:
        self.loaded_model(facts.model, elapsed_ns)

    def loaded_model(self, model: ModelState, elapsed_ns: int) -> None:
        self._record(elapsed_ns / 1e9, model.batch_attrs, context=NO_EXEMPLAR)

    def failed(self, identity: Identity, elapsed_ns: int, error: BaseException) -> None:
        name = type(error).__qualname__
        if name not in self._error_names:
            if len(self._error_names) >= MAX_LOAD_ERROR_TYPES:
                name = "_OTHER"
            else:
                self._error_names.add(name)
        attrs: dict[str, Any] = {sc.ML_FRAMEWORK: sc.FRAMEWORK_PADDLE, sc.ML_MODEL_NAME: identity.name}
        if identity.version is not None:
            attrs[sc.ML_MODEL_VERSION] = identity.version
        attrs[sc.ERROR_TYPE] = name
        self._record(elapsed_ns / 1e9, attrs, context=NO_EXEMPLAR)


def _timed(
    original: Callable[..., Any],
    site: str,
    done: Callable[[Any, Any, int], object],
    failed: Callable[[Any, int, BaseException], object],
) -> Callable[..., Any]:
    """Call ``original`` once, then ``done(result, first argument, ns)`` or ``failed(first argument, ns, exc)``.

    Both hooks are guarded; the result or the exception reaches the caller as it was.
    """
    safe_done, safe_failed = guarded(site)(done), guarded(site)(failed)
    perf = time.perf_counter_ns

    def wrapper(first: Any, *args: Any, **kwargs: Any) -> Any:
        t0 = perf()
        try:
            result = original(first, *args, **kwargs)
        except BaseException as exc:
            safe_failed(first, perf() - t0, exc)
            raise
        safe_done(result, first, perf() - t0)
        return result

    wrapper.__wrapped__ = original  # type: ignore[attr-defined]
    wrapper.__doc__ = getattr(original, "__doc__", None)
    wrapper.__name__ = getattr(original, "__name__", "wrapper")
    return wrapper


def make_create_predictor(original: Callable[..., Any], registry: Registry, timer: LoadTimer) -> Callable[..., Any]:
    """Wrap ``create_predictor(config)``: record the config's facts for the new predictor, time the load."""

    def done(predictor: Any, config: Any, elapsed_ns: int) -> None:
        timer.loaded(registry.register(predictor, config), elapsed_ns)

    def failed(config: Any, elapsed_ns: int, error: BaseException) -> None:
        timer.failed(registry.identity(config), elapsed_ns, error)

    return _timed(original, "paddle.create_predictor", done, failed)


def make_clone(original: Callable[..., Any], registry: Registry, timer: LoadTimer) -> Callable[..., Any]:
    """Wrap ``Predictor.clone`` so that a clone keeps its parent's model name and flags; time it."""

    def done(clone: Any, parent: Any, elapsed_ns: int) -> None:
        timer.loaded(registry.derive(clone, parent), elapsed_ns)

    def failed(parent: Any, elapsed_ns: int, error: BaseException) -> None:
        timer.failed(registry.facts(parent).identity, elapsed_ns, error)

    return _timed(original, "paddle.Predictor.clone", done, failed)


def make_pool_init(original: Callable[..., Any], registry: Registry, timer: LoadTimer) -> Callable[..., Any]:
    """Wrap ``PredictorPool.__init__(config, size)``: its members are named from ``config``, its load timed.

    Without it a pool's members are made in C++, out of sight of the
    ``create_predictor`` wrapper: an OCR pipeline's detector and recogniser
    pools would both be ``unknown``, one series, and record no load time.
    """

    def done(pool: Any, args: tuple[Any, ...], kwargs: dict[str, Any], elapsed_ns: int) -> None:
        config = args[0] if args else kwargs.get("arg0")
        size = args[1] if len(args) > 1 else kwargs.get("arg1", 0)
        timer.loaded_model(registry.pool_created(pool, config, int(size)), elapsed_ns)

    def failed(args: tuple[Any, ...], kwargs: dict[str, Any], elapsed_ns: int, error: BaseException) -> None:
        config = args[0] if args else kwargs.get("arg0")
        timer.failed(registry.identity(config), elapsed_ns, error)

    safe_done, safe_failed = guarded("paddle.PredictorPool")(done), guarded("paddle.PredictorPool")(failed)
    perf = time.perf_counter_ns

    def __init__(pool: Any, *args: Any, **kwargs: Any) -> None:
        t0 = perf()
        try:
            original(pool, *args, **kwargs)
        except BaseException as exc:
            safe_failed(args, kwargs, perf() - t0, exc)
            raise
        safe_done(pool, args, kwargs, perf() - t0)

    __init__.__wrapped__ = original  # type: ignore[attr-defined]
    __init__.__doc__ = getattr(original, "__doc__", None)
    return __init__


def make_retrieve(original: Callable[..., Any], registry: Registry) -> Callable[..., Any]:
    """Wrap ``PredictorPool.retrieve(index)``: every wrapper of a member gets that member's facts."""
    safe_retrieved = guarded("paddle.PredictorPool.retrieve")(registry.retrieved)

    def retrieve(pool: Any, *args: Any, **kwargs: Any) -> Any:
        predictor = original(pool, *args, **kwargs)
        safe_retrieved(pool, args[0] if args else kwargs.get("arg0"), predictor)
        return predictor

    retrieve.__wrapped__ = original  # type: ignore[attr-defined]
    retrieve.__doc__ = getattr(original, "__doc__", None)
    retrieve.__name__ = "retrieve"
    return retrieve
