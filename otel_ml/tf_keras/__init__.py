"""Keras 2 training instrumentation (``tf_keras``): ``Model.fit``, ``evaluate`` and ``predict``.

Usage::

    from otel_ml.tf_keras import TfKerasInstrumentor
    TfKerasInstrumentor().instrument()        # before or after ``import tf_keras``
    model.fit(x, y, epochs=3)                 # metrics + spans, no code change

It covers ``import tf_keras`` and ``tf.keras`` under ``TF_USE_LEGACY_KERAS=1``
(both are the ``tf_keras`` distribution), with the same metrics, spans,
slow-step exemplars, anomalies and safety rules as the Keras 3 instrumentor,
from the same code in :mod:`otel_ml._training`; its series carry
``ml.framework="tf_keras"``.

Configuration: the options (and ``OTEL_ML_*`` variables) of the Keras 3
instrumentor, which it shares. Disable it alone with
``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=tf_keras``.

Keras 2 defines ``fit``/``evaluate``/``predict`` on
``tf_keras.src.engine.training.Model`` and makes each call's data through
``tf_keras.src.engine.data_adapter.get_data_handler``: those two are patched,
when the program imports them.
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
from otel_ml.tf_keras._flavour import KERAS_2
from otel_ml.tf_keras.package import _instruments_any

_TRAINING = "tf_keras.src.engine.training"
_DATA_ADAPTER = "tf_keras.src.engine.data_adapter"
_METHODS = ("fit", "evaluate", "predict")

__all__ = ["TfKerasInstrumentor"]


class TfKerasInstrumentor(OtelMLInstrumentor):
    """Instruments Keras 2 (``tf_keras``) training, evaluation and prediction."""

    _instruments_any = _instruments_any
    _imports = ("tf_keras",)
    option_table = OPTIONS
    _modules = (_TRAINING, _DATA_ADAPTER)
    _wrappers: TrainingWrappers | None = None

    def _setup(self, options: dict[str, Any], meter: Meter, tracer: Tracer, kwargs: dict[str, Any]) -> None:
        self._wrappers = TrainingWrappers(
            TrainingInstruments.create(meter), tracer, TrainingOptions(**options), KERAS_2
        )

    def _patch_module(self, module_name: str, module: ModuleType) -> None:
        wrappers = self._wrappers
        if wrappers is None:
            return
        if module_name == _DATA_ADAPTER:
            self._wrap(module, "get_data_handler", wrappers.get_data_adapter)
            return
        for method in _METHODS:
            self._wrap(module.Model, method, getattr(wrappers, method))

    def _teardown(self) -> None:
        self._wrappers = None
