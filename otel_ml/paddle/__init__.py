"""Paddle inference instrumentation: every ``Predictor.run()`` timed, counted and traced.

Usage::

    from otel_ml.paddle import PaddleInstrumentor
    PaddleInstrumentor().instrument()          # before or after ``import paddle``
    predictor = paddle.inference.create_predictor(config)
    predictor.run()                            # ml.inference.* metrics, no code change

Configuration: the ``model_name``, ``inference_warmup_runs``,
``slow_run_seconds`` and ``slow_run_factor`` options, or ``OTEL_ML_MODEL_NAME``,
``OTEL_ML_INFERENCE_WARMUP_RUNS``, ``OTEL_ML_SLOW_RUN_SECONDS`` and
``OTEL_ML_SLOW_RUN_FACTOR`` (see :mod:`otel_ml.environment_variables`).

``paddle.inference.Predictor`` is the compiled class
``paddle.base.libpaddle.PaddleInferPredictor``. Its ``run`` is replaced at
class level, which covers predictors made before and after instrumenting,
``clone()`` results and ``PredictorPool`` members; ``uninstrument()`` puts the
very same original back. Nothing is imported until the program imports
``paddle.inference``.
"""

from __future__ import annotations

import atexit
from collections.abc import Iterable
from types import ModuleType
from typing import Any, ClassVar

from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation

from otel_ml._base import OtelMLInstrumentor
from otel_ml._guard import guarded
from otel_ml.paddle._facts import Registry
from otel_ml.paddle._instruments import PaddleInstruments
from otel_ml.paddle._options import OPTION_NAMES, PaddleOptions
from otel_ml.paddle._run import RunHooks, make_clone, make_create_predictor, make_run
from otel_ml.paddle.package import _instruments_any
from otel_ml.version import __version__

_MODULE = "paddle.inference"

__all__ = ["PaddleInstrumentor"]


class PaddleInstrumentor(OtelMLInstrumentor):
    """Instruments Paddle Inference predictors (``paddlepaddle`` or ``paddlepaddle-gpu``)."""

    _instruments_any = _instruments_any
    options: ClassVar[frozenset[str]] = OPTION_NAMES

    def __init__(self) -> None:
        # BaseInstrumentor is a per-class singleton and __init__ runs on every call.
        if not hasattr(self, "_patched"):
            self._patched: list[tuple[Any, str, Any]] = []  # (owner, name, original)
            self._hooks: RunHooks | None = None

    def _instrument(self, **kwargs: Any) -> None:
        options = PaddleOptions.resolve(**{k: v for k, v in kwargs.items() if k in OPTION_NAMES})
        meter = metrics.get_meter(__name__, __version__, kwargs.get("meter_provider"))
        tracer = trace.get_tracer(__name__, __version__, kwargs.get("tracer_provider"))
        registry = Registry(options)
        self._hooks = RunHooks(registry, PaddleInstruments.create(meter, _observe_active), tracer)
        # Pending measurements must not die with the process; runs before the
        # MeterProvider's own exit hook, which was registered earlier.
        atexit.register(_flush_pending)
        self._active = True
        self._when_imported(_MODULE)

    def _patch_module(self, module_name: str, module: ModuleType) -> None:
        hooks = self._hooks
        if hooks is None:
            return
        predictor_cls = module.Predictor
        self._replace(predictor_cls, "run", lambda original: make_run(original, hooks))
        self._replace(predictor_cls, "clone", lambda original: make_clone(original, hooks.registry))
        self._replace(module, "create_predictor", lambda original: make_create_predictor(original, hooks.registry))

    def _replace(self, owner: Any, name: str, make: Any) -> None:
        original = owner.__dict__.get(name)
        if original is None or hasattr(original, "__wrapped__"):
            return  # not defined here, or already ours
        setattr(owner, name, make(original))
        self._patched.append((owner, name, original))

    def _uninstrument(self, **kwargs: Any) -> None:
        self._active = False
        for owner, name, original in reversed(self._patched):
            setattr(owner, name, original)
        self._patched.clear()
        atexit.unregister(_flush_pending)
        _flush_pending()
        self._hooks = None


def _observe_active(options: CallbackOptions) -> Iterable[Observation]:
    """Runs in flight per model, from the current instrumentation (none once uninstrumented).

    A module-level function because the SDK keeps the callbacks of the first
    registration of an instrument name: re-instrumenting must not leave it
    reading a stale registry.
    """
    hooks = PaddleInstrumentor()._hooks
    if hooks is None:
        return ()
    # The SDK runs observable callbacks at the start of a collection, before it
    # reads the synchronous instruments: the runs made so far are in this scrape.
    _flush_pending()
    return list(hooks.registry.observe_active(options))


@guarded("paddle.flush")
def _flush_pending() -> None:
    """Hand the current instrumentation's pending measurements to the SDK now."""
    hooks = PaddleInstrumentor()._hooks
    if hooks is not None:
        hooks.flush(wait=True)
