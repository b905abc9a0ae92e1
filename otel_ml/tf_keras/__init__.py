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

API: :class:`TfKerasInstrumentor` (``instrument(meter_provider=...,
tracer_provider=..., **options)``, ``uninstrument()``, which restores the
very originals).

Keras 2 defines ``fit``/``evaluate``/``predict`` on
``tf_keras.src.engine.training.Model`` and makes each call's data through
``tf_keras.src.engine.data_adapter.get_data_handler``: those two are patched,
when the program imports them.
"""

from __future__ import annotations

from otel_ml._training.instrumentor import TrainingInstrumentor
from otel_ml._training.options import OPTIONS
from otel_ml.tf_keras._flavour import KERAS_2
from otel_ml.tf_keras.package import _instruments_any

_TRAINERS = {"tf_keras.src.engine.training": "Model"}
_DATA = ("tf_keras.src.engine.data_adapter", "get_data_handler")

__all__ = ["TfKerasInstrumentor"]


class TfKerasInstrumentor(TrainingInstrumentor):
    """Instruments Keras 2 (``tf_keras``) training, evaluation and prediction."""

    _instruments_any = _instruments_any
    _imports = ("tf_keras",)
    option_table = OPTIONS
    _flavour = KERAS_2
    _trainers = _TRAINERS
    _data = _DATA
    _modules = (*_TRAINERS, _DATA[0])
