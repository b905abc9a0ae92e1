"""Keras training instrumentation: ``Model.fit``, ``evaluate`` and ``predict``.

Usage::

    from otel_ml.keras import KerasInstrumentor
    KerasInstrumentor().instrument()          # before or after ``import keras``
    model.fit(x, y, epochs=3)                 # metrics + spans, no code change

Configuration: the ``run_name``, ``slow_step_seconds``, ``slow_step_factor``,
``warmup_steps``, ``loss_spike_threshold`` and ``loss_spike_window`` options,
or their ``OTEL_ML_*`` variables (see :mod:`otel_ml.environment_variables`).

``fit``/``evaluate``/``predict`` live on the backend trainer class
(``keras.src.backend.tensorflow.trainer.TensorFlowTrainer`` for TensorFlow),
not on ``Model``; patching there covers Sequential, functional and subclassed
models, ``tf.keras`` (which is Keras 3 since TF 2.16), and models built
before instrumenting. Nothing is imported until the program imports Keras.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from opentelemetry.metrics import Meter
from opentelemetry.trace import Tracer

from otel_ml._core.instrumentor import OtelMLInstrumentor
from otel_ml._training.instruments import TrainingInstruments
from otel_ml._training.options import OPTIONS, TrainingOptions
from otel_ml._training.wrappers import TrainingWrappers
from otel_ml.keras._flavour import KERAS_3
from otel_ml.keras.package import _instruments_any

# Backend trainer module -> the class that defines fit/evaluate/predict.
_TRAINERS = {
    "keras.src.backend.tensorflow.trainer": "TensorFlowTrainer",
    "keras.src.backend.jax.trainer": "JAXTrainer",
    "keras.src.backend.torch.trainer": "TorchTrainer",
}
_DATA_ADAPTERS = "keras.src.trainers.data_adapters"
_METHODS = ("fit", "evaluate", "predict")

__all__ = ["KerasInstrumentor"]


class KerasInstrumentor(OtelMLInstrumentor):
    """Instruments Keras 3 training, evaluation and prediction."""

    _instruments_any = _instruments_any
    _imports = ("keras",)
    option_table = OPTIONS
    _modules = (*_TRAINERS, _DATA_ADAPTERS)
    _wrappers: TrainingWrappers | None = None

    def _setup(self, options: dict[str, Any], meter: Meter, tracer: Tracer, kwargs: dict[str, Any]) -> None:
        self._wrappers = TrainingWrappers(
            TrainingInstruments.create(meter), tracer, TrainingOptions(**options), KERAS_3
        )

    def _patch_module(self, module_name: str, module: ModuleType) -> None:
        wrappers = self._wrappers
        if wrappers is None:
            return
        if module_name == _DATA_ADAPTERS:
            self._wrap(module, "get_data_adapter", wrappers.get_data_adapter)
            return
        cls = getattr(module, _TRAINERS[module_name])
        for method in _METHODS:
            self._wrap(cls, method, getattr(wrappers, method))

    def _teardown(self) -> None:
        self._wrappers = None
