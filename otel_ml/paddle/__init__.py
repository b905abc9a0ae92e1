"""Paddle inference instrumentation: every ``Predictor.run()`` timed, counted and traced.

Usage::

    from otel_ml.paddle import PaddleInstrumentor
    PaddleInstrumentor().instrument()          # before or after ``import paddle``
    predictor = paddle.inference.create_predictor(config)
    predictor.run()                            # ml.inference.* metrics, no code change

Configuration: the ``model_name``, ``model_version``, ``inference_warmup_runs``,
``slow_run_seconds`` and ``slow_run_factor`` options, or ``OTEL_ML_MODEL_NAME``,
``OTEL_ML_MODEL_VERSION``, ``OTEL_ML_INFERENCE_WARMUP_RUNS``,
``OTEL_ML_SLOW_RUN_SECONDS`` and ``OTEL_ML_SLOW_RUN_FACTOR`` (see
:mod:`otel_ml.environment_variables`).

API: :class:`PaddleInstrumentor` (``uninstrument()`` restores the very
originals); :func:`set_model` names one predictor or one ``Config`` (and so every
predictor made from it) from code, e.g. in a service that serves several models.

``paddle.inference.Predictor`` is the compiled class
``paddle.base.libpaddle.PaddleInferPredictor``. Its ``run`` is replaced at
class level, which covers predictors made before and after instrumenting,
``clone()`` results and ``PredictorPool`` members; ``uninstrument()`` puts the
very same original back. Nothing is imported until the program imports
``paddle.inference``.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import ModuleType
from typing import Any

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Meter, Observation
from opentelemetry.trace import Tracer

from otel_ml._core.guard import guarded
from otel_ml._core.instrumentor import OtelMLInstrumentor
from otel_ml._core.observe import Binding, binding_for
from otel_ml.paddle._identity import set_identity
from otel_ml.paddle._instruments import PaddleInstruments
from otel_ml.paddle._loading import LoadTimer, make_clone, make_create_predictor, make_pool_init, make_retrieve
from otel_ml.paddle._options import OPTIONS, PaddleOptions
from otel_ml.paddle._registry import Registry
from otel_ml.paddle._run import RunRecorder, make_run
from otel_ml.paddle.package import _instruments_any

_MODULE = "paddle.inference"

__all__ = ["PaddleInstrumentor", "set_model"]


class PaddleInstrumentor(OtelMLInstrumentor):
    """Instruments Paddle Inference predictors (``paddlepaddle`` or ``paddlepaddle-gpu``)."""

    _instruments_any = _instruments_any
    _imports = ("paddle",)
    option_table = OPTIONS
    _modules = (_MODULE,)
    _hooks: RunRecorder | None = None
    _timer: LoadTimer | None = None
    _binding: Binding[RunRecorder] | None = None

    def _setup(self, options: dict[str, Any], meter: Meter, tracer: Tracer, kwargs: dict[str, Any]) -> None:
        registry = Registry(PaddleOptions(**options))
        instruments = PaddleInstruments.create(meter)
        self._hooks = RunRecorder(registry, instruments, tracer)
        self._timer = LoadTimer(instruments.load_duration)
        provider = kwargs.get("meter_provider") or metrics.get_meter_provider()
        self._binding = binding_for(
            provider,
            __name__,
            lambda binding: PaddleInstruments.create_observable(meter, binding.callback(_observe_active)),
        )
        self._binding.bind(self._hooks)

    def _patch_module(self, module_name: str, module: ModuleType) -> None:
        hooks, timer = self._hooks, self._timer
        if hooks is None or timer is None:
            return
        predictor_cls, registry = module.Predictor, hooks.registry
        self._patch(predictor_cls, "run", lambda original: make_run(original, hooks))
        self._patch(predictor_cls, "clone", lambda original: make_clone(original, registry, timer))
        self._patch(module, "create_predictor", lambda original: make_create_predictor(original, registry, timer))
        pool_cls = getattr(module, "PredictorPool", None)
        if pool_cls is not None:
            self._patch(pool_cls, "__init__", lambda original: make_pool_init(original, registry, timer))
            self._patch(pool_cls, "retrieve", lambda original: make_retrieve(original, registry))

    def _teardown(self) -> None:
        self._flush()
        if self._hooks is not None:
            self._hooks.registry.save()  # a live predictor keeps its run count: no second warm-up
        if self._binding is not None:
            self._binding.unbind()
        self._hooks = self._timer = self._binding = None

    def _at_exit(self) -> None:
        # Pending measurements must not die with the process.
        self._flush()

    @guarded("paddle.flush")
    def _flush(self) -> None:
        """Hand the current instrumentation's pending measurements to the SDK now."""
        if self._hooks is not None:
            self._hooks.flush(wait=True)


def set_model(target: Any, name: str, version: str | int | None = None) -> None:
    """Name the model that a predictor (or every predictor made from a ``Config``) serves.

    Beats ``OTEL_ML_MODEL_NAME`` and the name found from the model's path;
    kept for as long as the predictor or config lives, across
    ``uninstrument()`` and ``instrument()``. Name a ``Config`` before
    ``create_predictor(config)``; a predictor, any time (its next run uses it).

    Args:
        target: A ``paddle.inference.Predictor`` or ``Config``.
        name: ``ml.model.name``: a non-empty string of at most 128 characters.
        version: ``ml.model.version`` (a string or whole number of at most 64 characters), or None.

    Raises:
        ValueError: an empty or over-long name or version.
        TypeError: ``target`` is not a predictor or config.

    Example:
        >>> from otel_ml.paddle import set_model
        >>> set_model(config, "resnet50", version=3)  # doctest: +SKIP
    """
    hooks = PaddleInstrumentor()._hooks
    if hooks is not None:
        hooks.registry.forget(target)  # before renaming: its run count moves to the new identity
    set_identity(target, name, version)


def _observe_active(hooks: RunRecorder, options: CallbackOptions) -> Iterable[Observation]:
    """Runs in flight per model.

    The SDK runs observable callbacks at the start of a collection, before it
    reads the synchronous instruments: flushing here puts the runs made so far
    into this collection.
    """
    hooks.flush(wait=True)
    return list(hooks.registry.observe_active(options))
